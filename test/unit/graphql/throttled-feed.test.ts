import { describe, expect, it } from 'vitest';
import { throttledSnapshots } from '../../../src/graphql/throttled-feed.js';
import { createEventBus } from '../../../src/shared/event-bus.js';

const INTERVAL_MS = 100;

/** A counter changed by events on a real event bus; each snapshot reads it and counts itself. */
function counterFeed() {
  const pubsub = createEventBus<{ changed: number }>();
  const state = { value: 0, snapshots: 0, takenAt: [] as number[] };
  const feed = throttledSnapshots({
    changes: [pubsub.subscribe('changed')],
    snapshot: () => {
      state.snapshots += 1;
      state.takenAt.push(performance.now());
      return Promise.resolve(state.value);
    },
    same: (a, b) => a === b,
    intervalMs: INTERVAL_MS,
    recheckMs: 60_000,
  });
  const change = (value: number) => {
    state.value = value;
    pubsub.publish('changed', value);
  };
  return { feed, change, state };
}

describe('throttledSnapshots', () => {
  it('sends the state at once, then one trailing snapshot after a burst, spaced by the interval', async () => {
    const { feed, change, state } = counterFeed();
    const first = await feed.next();
    expect(first.value).toBe(0);
    for (let value = 1; value <= 500; value += 1) change(value);
    const second = await feed.next();
    expect(second.value).toBe(500);
    // Counted from the first snapshot, taken just before the first state went out.
    expect(performance.now() - state.takenAt[0]!).toBeGreaterThanOrEqual(INTERVAL_MS);
    await feed.return?.();
  });

  it('does not repeat an unchanged state', async () => {
    const { feed, change, state } = counterFeed();
    await feed.next();
    change(0);
    let settled = false;
    const next = feed.next().then((result) => {
      settled = true;
      return result;
    });
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS * 3));
    // It looked again after the event, found the same state and sent nothing.
    expect(state.snapshots).toBe(2);
    expect(settled).toBe(false);
    change(7);
    expect((await next).value).toBe(7);
    await feed.return?.();
  });

  it('ends at once when the subscriber leaves while nothing changes', async () => {
    const { feed } = counterFeed();
    await feed.next();
    const waiting = feed.next();
    const started = performance.now();
    await feed.return?.();
    expect(await waiting).toEqual({ value: undefined, done: true });
    expect(performance.now() - started).toBeLessThan(INTERVAL_MS);
  });
});
