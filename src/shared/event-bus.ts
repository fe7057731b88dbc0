import { setMaxListeners } from 'node:events';

/**
 * The app's event bus: typed publish and subscribe over EventTargets, with the CustomEvent-with-
 * `detail` shape graphql-yoga's PubSub uses. Events of this instance are dispatched in process at
 * once; with a relay (src/shared/redis-event-relay.ts) they also reach the other instances of the
 * deployment, and theirs arrive here.
 *
 * Why not yoga's createPubSub: its subscriptions are Repeaters that throw once 1,024 pushes wait
 * unread, and the throw happens inside dispatchEvent, so a burst (an inventory import of a few
 * thousand devices publishes one event per device after its commit) ends the whole process. Here a
 * subscription queues what its consumer has not read yet: the consumers are this service's own
 * loops, and the GraphQL feeds put their own bounded, metered buffers behind it.
 */
export interface EventBus<Events extends object> {
  publish<K extends keyof Events & string>(topic: K, payload: Events[K]): void;
  /**
   * The events of every instance: what each instance shows or enforces (the GraphQL feeds, its
   * broker's sessions, its isolation list).
   */
  subscribe<K extends keyof Events & string>(topic: K): AsyncIterableIterator<Events[K]>;
  /** This instance's own events only: work done once per event wherever it happened (risk, presence). */
  subscribeOwn<K extends keyof Events & string>(topic: K): AsyncIterableIterator<Events[K]>;
}

/** Carries events between the instances of a deployment. */
export interface EventRelay {
  /** Sends an event of this instance to the others; never to this one. */
  send(topic: string, payload: unknown): void;
  /** Where the other instances' events arrive, as CustomEvents named by their topic. */
  readonly received: EventTarget;
}

export function createEventBus<Events extends object>(relay?: EventRelay): EventBus<Events> {
  const own = new EventTarget();
  // Every live subscription is a listener: thousands are the normal load, not a leak.
  setMaxListeners(0, own);
  const everyInstance = relay ? [own, relay.received] : [own];
  return {
    publish(topic, payload) {
      own.dispatchEvent(new CustomEvent(topic, { detail: payload }));
      relay?.send(topic, payload);
    },
    subscribe<K extends keyof Events & string>(topic: K) {
      return subscription<Events[K]>(everyInstance, topic);
    },
    subscribeOwn<K extends keyof Events & string>(topic: K) {
      return subscription<Events[K]>([own], topic);
    },
  };
}

function subscription<T>(targets: readonly EventTarget[], topic: string): AsyncIterableIterator<T> {
  let queue: T[] = [];
  let head = 0;
  let ended = false;
  let wake: (() => void) | undefined;
  const listener = (event: Event) => {
    queue.push((event as CustomEvent<T>).detail);
    wake?.();
  };
  for (const target of targets) target.addEventListener(topic, listener);
  const iterator: AsyncIterableIterator<T> = {
    async next(): Promise<IteratorResult<T>> {
      while (head === queue.length && !ended) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      if (head === queue.length) return { done: true, value: undefined };
      const value = queue[head]!;
      head += 1;
      // Drop the read part now and then, so a long-lived subscription does not keep every event.
      if (head >= 1024 && head * 2 >= queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      return { done: false, value };
    },
    return(): Promise<IteratorResult<T>> {
      ended = true;
      for (const target of targets) target.removeEventListener(topic, listener);
      queue = [];
      head = 0;
      wake?.();
      return Promise.resolve({ done: true, value: undefined });
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
