import { describe, expect, it } from 'vitest';
import { MissedEvents, boundedFeed } from '../../../src/graphql/subscription-feed.js';

interface Event {
  seq: number;
}

/** A feed with counters in place of the metrics. */
function feedOf(capacity: number) {
  const counts = { overflows: 0, dropped: 0, returned: 0 };
  const feed = boundedFeed<Event>({
    capacity,
    cursorOf: (event) => `c${event.seq}`,
    onOverflow: () => (counts.overflows += 1),
    onDrop: () => (counts.dropped += 1),
    onReturn: () => (counts.returned += 1),
  });
  const publish = async (from: number, to: number) => {
    for (let seq = from; seq <= to; seq += 1) feed.offer({ seq });
    await new Promise((resolve) => setImmediate(resolve));
  };
  const read = async (count: number) => {
    const items: Array<Event | MissedEvents> = [];
    for (let index = 0; index < count; index += 1)
      items.push((await feed.next()).value as Event | MissedEvents);
    return items;
  };
  return { feed, publish, read, counts };
}

const seqs = (items: Array<Event | MissedEvents>) =>
  items.map((item) =>
    item instanceof MissedEvents ? `missed(after ${item.cursor}, ${item.dropped})` : item.seq,
  );

describe('boundedFeed', () => {
  it('passes every event through to a subscriber that keeps up', async () => {
    const { feed, publish, read, counts } = feedOf(4);
    const reading = read(10);
    for (let seq = 1; seq <= 10; seq += 1) await publish(seq, seq); // the bus hands events on one per turn
    expect(seqs(await reading)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(counts).toEqual({ overflows: 0, dropped: 0, returned: 0 });
    await feed.return();
  });

  it('holds at most its capacity for one that does not read, then marks the gap with the last cursor', async () => {
    const { feed, publish, read, counts } = feedOf(4);
    await publish(1, 10);
    expect(counts).toEqual({ overflows: 1, dropped: 6, returned: 0 });
    // Nothing newer arrives: the marker comes as soon as the subscriber has read what was kept.
    expect(seqs(await read(5))).toEqual([1, 2, 3, 4, 'missed(after c4, 6)']);
    // Caught up: live again.
    const next = read(1);
    await publish(11, 11);
    expect(seqs(await next)).toEqual([11]);
    await feed.return();
  });

  it('puts the marker before the first event that fits after the gap', async () => {
    const { feed, publish, read, counts } = feedOf(4);
    await publish(1, 6); // 1-4 kept, 5 and 6 dropped
    expect(seqs(await read(3))).toEqual([1, 2, 3]); // room for the marker and one more event
    await publish(7, 9); // the marker and 7 fit, then 8; 9 overflows again
    expect(seqs(await read(5))).toEqual([4, 'missed(after c4, 2)', 7, 8, 'missed(after c8, 1)']);
    expect(counts).toEqual({ overflows: 2, dropped: 3, returned: 0 });
    await feed.return();
  });

  it('tells its producer once when the subscriber leaves, and takes nothing after', async () => {
    const { feed, publish, counts } = feedOf(4);
    await publish(1, 2);
    await feed.return();
    await feed.return();
    expect(counts.returned).toBe(1);
    expect(await feed.next()).toEqual({ value: undefined, done: true });
    await publish(3, 3);
    expect(await feed.next()).toEqual({ value: undefined, done: true });
  });

  it('hands out what it holds before the end, then the producer error', async () => {
    const { feed, publish } = feedOf(4);
    await publish(1, 2);
    feed.end(new Error('source failed'));
    expect(seqs([(await feed.next()).value as Event, (await feed.next()).value as Event])).toEqual([1, 2]);
    await expect(feed.next()).rejects.toThrow('source failed');
  });

  it('knows the cursor of the last item it handed out, marker or event', async () => {
    const { feed, publish, read } = feedOf(2);
    expect(feed.yieldedCursor).toBeNull();
    await publish(1, 4); // 1, 2 kept; 3, 4 dropped
    await read(1);
    expect(feed.yieldedCursor).toBe('c1');
    await read(2); // 2, then the marker naming c2
    expect(feed.yieldedCursor).toBe('c2');
    await feed.return();
  });
});
