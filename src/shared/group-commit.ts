/**
 * Group commit: items submitted one at a time are handed to `flush` in groups, so a burst costs one
 * transaction per group instead of one per item. A group closes when `maxItems` are waiting or
 * `maxDelayMs` after its first item arrived; at most `maxInFlight` groups are flushed at once, and
 * while none is free the waiting group keeps growing (up to `maxItems`). Each item's promise settles
 * with its own entry of the array `flush` returns (same order as the items), or with the error of a
 * flush that threw.
 */
interface Pending<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export class GroupCommit<T, R> {
  #waiting: Array<Pending<T, R>> = [];
  #timer: NodeJS.Timeout | undefined;
  /** The waiting items have waited long enough: flush them as soon as a slot is free. */
  #due = false;
  #inFlight = 0;
  readonly #idle = new Set<() => void>();

  constructor(
    private readonly options: {
      maxItems: number;
      maxDelayMs: number;
      maxInFlight: number;
      flush: (items: T[]) => Promise<R[]>;
    },
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      this.#pump();
    });
  }

  /** Resolves when everything submitted so far has been flushed. */
  drain(): Promise<void> {
    if (this.#waiting.length === 0 && this.#inFlight === 0) return Promise.resolve();
    this.#due = this.#waiting.length > 0;
    const idle = new Promise<void>((resolve) => this.#idle.add(resolve));
    this.#pump();
    return idle;
  }

  #pump(): void {
    while (
      this.#inFlight < this.options.maxInFlight &&
      this.#waiting.length > 0 &&
      (this.#due || this.#waiting.length >= this.options.maxItems)
    ) {
      const group = this.#waiting.splice(0, this.options.maxItems);
      // What is left arrived while the group filled up or a flush ran: it goes next, without a timer.
      this.#due = this.#waiting.length > 0;
      this.#inFlight += 1;
      void this.#run(group);
    }
    if (this.#waiting.length === 0) {
      this.#due = false;
      clearTimeout(this.#timer);
      this.#timer = undefined;
    } else if (!this.#due && !this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#due = true;
        this.#pump();
      }, this.options.maxDelayMs);
    }
  }

  async #run(group: Array<Pending<T, R>>): Promise<void> {
    try {
      const results = await this.options.flush(group.map((entry) => entry.item));
      group.forEach((entry, index) => entry.resolve(results[index]!));
    } catch (error) {
      for (const entry of group) entry.reject(error);
    } finally {
      this.#inFlight -= 1;
      this.#pump();
      if (this.#inFlight === 0 && this.#waiting.length === 0) {
        for (const resolve of this.#idle) resolve();
        this.#idle.clear();
      }
    }
  }
}
