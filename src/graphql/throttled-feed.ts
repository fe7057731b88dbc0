export interface ThrottledSnapshotOptions<T> {
  /** Event streams whose items mean "the state may have changed"; their content is not used. */
  changes: Array<AsyncIterable<unknown>>;
  /** Takes a snapshot that starts after `notBefore` (the `performance.now()` of the last change heard). */
  snapshot: (notBefore: number) => Promise<T>;
  /** Equal snapshots are not sent twice. */
  same: (a: T, b: T) => boolean;
  /** At least this long between two snapshots sent. */
  intervalMs: number;
  /** Also look again this often without an event, for what changes with time alone. */
  recheckMs: number;
}

/**
 * One subscriber's view of a state that may change very often: the current snapshot at once, then
 * a new one after changes, never two within `intervalMs`. The throttle is trailing-edge: after the
 * last change of a burst a snapshot is always taken, so the last message is exact. Nothing queues:
 * a subscriber that does not read holds one "changed" flag, whatever the rate of events, and is
 * given the state as it is when it reads again.
 */
export function throttledSnapshots<T>(options: ThrottledSnapshotOptions<T>): AsyncIterableIterator<T> {
  let stopped = false;
  let stop: () => void = () => {};
  const stopping = new Promise<void>((resolve) => (stop = resolve));
  const untilStopped = (promise: Promise<unknown>) => Promise.race([promise, stopping]);

  async function* run(): AsyncGenerator<T> {
    let changed = false;
    let lastChangeAt = performance.now();
    let wake: (() => void) | null = null;
    const mark = () => {
      changed = true;
      lastChangeAt = performance.now();
      wake?.();
      wake = null;
    };
    const sources = options.changes.map((source) => source[Symbol.asyncIterator]());
    for (const source of sources) {
      void (async () => {
        for (let next = await source.next(); !next.done && !stopped; next = await source.next()) mark();
      })().catch(() => mark());
    }
    const recheck = setInterval(mark, options.recheckMs);
    recheck.unref();
    try {
      let last = await options.snapshot(lastChangeAt);
      if (stopped) return;
      let sentAt = performance.now();
      yield last;
      for (;;) {
        if (!changed) await untilStopped(new Promise<void>((resolve) => (wake = resolve)));
        // Timers count whole milliseconds and may fire up to one early: wait until the interval has
        // really passed.
        for (let wait = sentAt + options.intervalMs - performance.now(); wait > 0 && !stopped;) {
          await untilStopped(new Promise((resolve) => setTimeout(resolve, Math.ceil(wait))));
          wait = sentAt + options.intervalMs - performance.now();
        }
        if (stopped) return;
        changed = false;
        const next = await options.snapshot(lastChangeAt);
        if (stopped) return;
        if (options.same(last, next)) continue;
        last = next;
        sentAt = performance.now();
        yield next;
      }
    } finally {
      clearInterval(recheck);
      await Promise.all(sources.map(async (source) => source.return?.()));
    }
  }

  const generator = run();
  const end = () => {
    stopped = true;
    stop();
  };
  return {
    next: () => generator.next(),
    // A generator waiting inside (not at a yield) only returns once that wait ends: end it first.
    return: () => {
      end();
      return generator.return(undefined);
    },
    throw: (error: unknown) => {
      end();
      return generator.throw(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
