import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../../src/shared/group-commit.js';

function recorder(options: { maxItems: number; maxDelayMs: number; maxInFlight: number }) {
  const groups: number[][] = [];
  let inFlight = 0;
  let peak = 0;
  const gate: Array<() => void> = [];
  const commit = new GroupCommit<number, string>({
    ...options,
    flush: async (items) => {
      groups.push(items);
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await new Promise<void>((resolve) => gate.push(resolve));
      inFlight -= 1;
      if (items.includes(-1)) throw new Error('poisoned group');
      return items.map((item) => `r${item}`);
    },
  });
  const release = () => {
    for (const open of gate.splice(0)) open();
  };
  return { commit, groups, release, peak: () => peak };
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

describe('GroupCommit', () => {
  it('groups what arrives within the delay, and answers each item with its own result', async () => {
    const { commit, groups, release } = recorder({ maxItems: 100, maxDelayMs: 5, maxInFlight: 1 });
    const results = [1, 2, 3].map((item) => commit.submit(item));
    await tick(20);
    expect(groups).toEqual([[1, 2, 3]]);
    release();
    expect(await Promise.all(results)).toEqual(['r1', 'r2', 'r3']);
  });

  it('closes a full group at once, and lets waiting items grow into the next group while flushes run', async () => {
    const { commit, groups, release, peak } = recorder({ maxItems: 2, maxDelayMs: 1_000, maxInFlight: 1 });
    const results = [1, 2, 3, 4, 5].map((item) => commit.submit(item));
    await tick();
    expect(groups).toEqual([[1, 2]]);
    release();
    await tick();
    // 3..5 waited for the flush in progress: they are due without another delay.
    expect(groups).toEqual([
      [1, 2],
      [3, 4],
    ]);
    release();
    await tick();
    release();
    expect(await Promise.all(results)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(groups).toEqual([[1, 2], [3, 4], [5]]);
    expect(peak()).toBe(1);
  });

  it('rejects the items of a failed group only, and drain waits for everything submitted', async () => {
    const { commit, release } = recorder({ maxItems: 2, maxDelayMs: 1_000, maxInFlight: 2 });
    const poisoned = [commit.submit(-1), commit.submit(7)].map((result) =>
      result.then(String, (error: Error) => error.message),
    );
    const healthy = commit.submit(8);
    let drained = false;
    const draining = commit.drain().then(() => (drained = true));
    await tick();
    expect(drained).toBe(false);
    release();
    await tick();
    release();
    await draining;
    expect(await Promise.all(poisoned)).toEqual(['poisoned group', 'poisoned group']);
    expect(await healthy).toBe('r8');
  });
});
