import { describe, expect, it } from 'vitest';
import { createEventBus } from '../../../src/shared/event-bus.js';

describe('event bus', () => {
  it('keeps a burst far larger than a Repeater allows for a consumer that has not read yet, in order', async () => {
    const bus = createEventBus<{ changed: number }>();
    const events = bus.subscribe('changed');
    // yoga's createPubSub throws RepeaterOverflowError from inside dispatchEvent past 1,024 of these.
    expect(() => {
      for (let value = 0; value < 5_000; value += 1) bus.publish('changed', value);
    }).not.toThrow();
    const received: number[] = [];
    for await (const value of events) {
      received.push(value);
      if (received.length === 5_000) break;
    }
    expect(received).toEqual(Array.from({ length: 5_000 }, (_, index) => index));
  });

  it('delivers to each subscriber what was published after it subscribed, and nothing once it returned', async () => {
    const bus = createEventBus<{ changed: number; other: string }>();
    bus.publish('changed', 0);
    const first = bus.subscribe('changed');
    const second = bus.subscribe('changed');
    bus.publish('other', 'not for them');
    bus.publish('changed', 1);
    expect(await first.next()).toEqual({ done: false, value: 1 });
    expect(await second.next()).toEqual({ done: false, value: 1 });

    const waiting = first.next();
    await first.return?.();
    expect(await waiting).toEqual({ done: true, value: undefined });
    bus.publish('changed', 2);
    expect(await first.next()).toEqual({ done: true, value: undefined });
    expect(await second.next()).toEqual({ done: false, value: 2 });
  });

  it('gives a single instance its own events on both kinds of subscription', async () => {
    const bus = createEventBus<{ changed: number }>();
    const everyInstance = bus.subscribe('changed');
    const own = bus.subscribeOwn('changed');
    bus.publish('changed', 7);
    expect(await everyInstance.next()).toEqual({ done: false, value: 7 });
    expect(await own.next()).toEqual({ done: false, value: 7 });
  });
});
