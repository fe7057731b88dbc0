/**
 * A gap in a subscriber's feed: events after `cursor` (the last one this subscriber was given) were
 * dropped because it fell a whole buffer behind. It reads on from `cursor` through the matching query.
 */
export class MissedEvents {
  constructor(
    readonly cursor: string | null,
    public dropped: number,
  ) {}
}

export interface FeedOptions<T> {
  /** Items (events and gap markers) held for a subscriber that is not reading; at least 2. */
  capacity: number;
  cursorOf: (event: T) => string | null;
  /** Once per gap, when the buffer first overflows. */
  onOverflow: () => void;
  /** Once per event dropped. */
  onDrop: () => void;
}

/**
 * Takes events from `source` as they are published, whatever the subscriber does, into a buffer of
 * its own: a subscriber that stops reading (a full TCP window, a frozen tab) holds at most
 * `capacity` items and never makes the publisher or any other subscriber wait. Past that, events are
 * dropped and replaced by one MissedEvents marker, delivered in order: before the next event that
 * fits, or as soon as the subscriber has read everything before it.
 */
export function boundedFeed<T extends object>(
  source: AsyncIterable<T>,
  options: FeedOptions<T>,
): AsyncIterableIterator<T | MissedEvents> {
  const upstream = source[Symbol.asyncIterator]();
  const queue: Array<T | MissedEvents> = [];
  let gap: MissedEvents | null = null;
  let lastCursor: string | null = null;
  let finished = false;
  let failure: Error | null = null;
  let waiting: {
    resolve: (result: IteratorResult<T | MissedEvents>) => void;
    reject: (error: unknown) => void;
  } | null = null;

  const wake = (): void => {
    const waiter = waiting;
    waiting = null;
    if (!waiter) return;
    if (failure) waiter.reject(failure);
    else waiter.resolve({ value: undefined, done: true });
  };

  const accept = (event: T): void => {
    if (waiting) {
      // Reading and caught up: nothing is queued and no gap is open.
      const waiter = waiting;
      waiting = null;
      lastCursor = options.cursorOf(event);
      waiter.resolve({ value: event, done: false });
      return;
    }
    if (gap) {
      if (queue.length + 2 > options.capacity) {
        gap.dropped += 1;
        options.onDrop();
        return;
      }
      queue.push(gap);
      gap = null;
    } else if (queue.length >= options.capacity) {
      gap = new MissedEvents(lastCursor, 1);
      options.onOverflow();
      options.onDrop();
      return;
    }
    queue.push(event);
    lastCursor = options.cursorOf(event);
  };

  void (async () => {
    try {
      for (;;) {
        const next = await upstream.next();
        if (next.done || finished) break;
        accept(next.value);
      }
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
    } finally {
      finished = true;
      wake();
    }
  })();

  const feed: AsyncIterableIterator<T | MissedEvents> = {
    next() {
      const item = queue.shift();
      if (item !== undefined) return Promise.resolve({ value: item, done: false });
      if (gap) {
        const marker = gap;
        gap = null;
        return Promise.resolve({ value: marker, done: false });
      }
      if (failure) return Promise.reject(failure);
      if (finished) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
      });
    },
    async return() {
      finished = true;
      queue.length = 0;
      gap = null;
      wake();
      await upstream.return?.();
      return { value: undefined, done: true };
    },
    async throw(error: unknown) {
      await feed.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return feed;
    },
  };
  return feed;
}
