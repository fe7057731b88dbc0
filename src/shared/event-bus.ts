/**
 * The in-process side of the app's event bus: typed publish and subscribe over an EventTarget (which
 * a Redis-backed target can replace for several instances), with the CustomEvent-with-`detail` shape
 * graphql-yoga's PubSub uses.
 *
 * Why not yoga's createPubSub: its subscriptions are Repeaters that throw once 1,024 pushes wait
 * unread, and the throw happens inside dispatchEvent, so a burst (an inventory import of a few
 * thousand devices publishes one event per device after its commit) ends the whole process. Here a
 * subscription queues what its consumer has not read yet: the consumers are this service's own
 * loops, and the GraphQL feeds put their own bounded, metered buffers behind it.
 */
export interface EventBus<Events extends object> {
  publish<K extends keyof Events & string>(topic: K, payload: Events[K]): void;
  subscribe<K extends keyof Events & string>(topic: K): AsyncIterableIterator<Events[K]>;
}

export function createEventBus<Events extends object>(
  target: EventTarget = new EventTarget(),
): EventBus<Events> {
  return {
    publish(topic, payload) {
      target.dispatchEvent(new CustomEvent(topic, { detail: payload }));
    },
    subscribe<K extends keyof Events & string>(topic: K) {
      return subscription<Events[K]>(target, topic);
    },
  };
}

function subscription<T>(target: EventTarget, topic: string): AsyncIterableIterator<T> {
  let queue: T[] = [];
  let head = 0;
  let ended = false;
  let wake: (() => void) | undefined;
  const listener = (event: Event) => {
    queue.push((event as CustomEvent<T>).detail);
    wake?.();
  };
  target.addEventListener(topic, listener);
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
      target.removeEventListener(topic, listener);
      queue = [];
      head = 0;
      wake?.();
      return Promise.resolve({ done: true, value: undefined });
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
