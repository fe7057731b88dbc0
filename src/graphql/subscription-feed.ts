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
  cursorOf: (item: T) => string | null;
  /** Once per gap, when the buffer first overflows. */
  onOverflow: () => void;
  /** Once per event dropped. */
  onDrop: () => void;
  /** When the subscriber leaves (once): the producer stops offering. */
  onReturn?: () => void;
}

/** The subscriber's side is an async iterator; the producer's side never waits and never throws. */
export interface BoundedFeed<T> extends AsyncIterableIterator<T | MissedEvents> {
  /** Hands the subscriber an item, or drops it when the subscriber is a whole buffer behind. */
  offer(item: T): void;
  /** No more items: the subscriber reads what is held, then the end (or `error`). */
  end(error?: Error): void;
  /** The subscriber leaves: what is held is dropped and the producer told (onReturn). */
  return(): Promise<IteratorResult<T | MissedEvents>>;
  /** The cursor of the last item handed to the subscriber (an event's, or a marker's own). */
  readonly yieldedCursor: string | null;
}

/**
 * A subscriber's buffer of its own: a subscriber that stops reading (a full TCP window, a frozen
 * tab) holds at most `capacity` items and never makes the producer or any other subscriber wait.
 * Past that, items are dropped and replaced by one MissedEvents marker, delivered in order: before
 * the next item that fits, or as soon as the subscriber has read everything before it.
 */
export function boundedFeed<T extends object>(options: FeedOptions<T>): BoundedFeed<T> {
  const queue: Array<T | MissedEvents> = [];
  let gap: MissedEvents | null = null;
  let acceptedCursor: string | null = null;
  let yieldedCursor: string | null = null;
  let finished = false;
  let returned = false;
  let failure: Error | null = null;
  let waiting: {
    resolve: (result: IteratorResult<T | MissedEvents>) => void;
    reject: (error: unknown) => void;
  } | null = null;

  const handOut = (item: T | MissedEvents): IteratorResult<T | MissedEvents> => {
    yieldedCursor = item instanceof MissedEvents ? item.cursor : options.cursorOf(item);
    return { value: item, done: false };
  };

  const feed: BoundedFeed<T> = {
    get yieldedCursor() {
      return yieldedCursor;
    },
    offer(item) {
      if (finished) return;
      if (waiting) {
        // Reading and caught up: nothing is queued and no gap is open.
        const waiter = waiting;
        waiting = null;
        acceptedCursor = options.cursorOf(item);
        waiter.resolve(handOut(item));
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
        gap = new MissedEvents(acceptedCursor, 1);
        options.onOverflow();
        options.onDrop();
        return;
      }
      queue.push(item);
      acceptedCursor = options.cursorOf(item);
    },
    end(error) {
      if (finished) return;
      finished = true;
      failure = error ?? null;
      const waiter = waiting;
      waiting = null;
      if (!waiter) return;
      if (failure) waiter.reject(failure);
      else waiter.resolve({ value: undefined, done: true });
    },
    next() {
      const item = queue.shift();
      if (item !== undefined) return Promise.resolve(handOut(item));
      if (gap) {
        const marker = gap;
        gap = null;
        return Promise.resolve(handOut(marker));
      }
      if (failure) return Promise.reject(failure);
      if (finished) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
      });
    },
    return() {
      if (!returned) {
        returned = true;
        feed.end();
        options.onReturn?.();
      }
      queue.length = 0;
      gap = null;
      failure = null;
      return Promise.resolve({ value: undefined, done: true });
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
