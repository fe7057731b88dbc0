import { parse, type ExecutionArgs, type ExecutionResult } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { GraphQLContext } from '../../../src/graphql/context.js';
import { schema } from '../../../src/graphql/schema.js';
import { sharedSubscriptionsPlugin } from '../../../src/graphql/shared-subscriptions.js';
import { createMetrics } from '../../../src/observability/metrics.js';

type Subscribe = (args: ExecutionArgs) => Promise<AsyncIterable<ExecutionResult> | ExecutionResult>;

/** An upstream execution the test drives by hand: what it yields, and whether it was stopped. */
function upstream() {
  const pending: Array<(result: IteratorResult<ExecutionResult>) => void> = [];
  const state = { stopped: false };
  const iterable: AsyncIterable<ExecutionResult> = {
    [Symbol.asyncIterator]: () => ({
      next: () => new Promise((resolve) => pending.push(resolve)),
      return: () => {
        state.stopped = true;
        for (const resolve of pending.splice(0)) resolve({ value: undefined, done: true });
        return Promise.resolve({ value: undefined, done: true });
      },
    }),
  };
  const emit = async (data: Record<string, unknown>) => {
    while (pending.length === 0) await new Promise((resolve) => setImmediate(resolve));
    pending.shift()!({ value: { data }, done: false });
  };
  return { iterable, emit, state };
}

/** The subscribe function the plugin puts in place of `inner`, as envelop would call it. */
function shared(inner: Subscribe): Subscribe {
  const plugin = sharedSubscriptionsPlugin(createMetrics());
  let wrapped: Subscribe | undefined;
  (plugin.onSubscribe as (payload: unknown) => void)({
    subscribeFn: inner,
    setSubscribeFn: (fn: Subscribe) => (wrapped = fn),
  });
  return wrapped!;
}

const FEED = parse('subscription { auditEvents { __typename } }');

function argsFor(role: string, variables: Record<string, unknown> = {}): ExecutionArgs {
  const contextValue = {
    viewer: { tokenId: `t-${role}`, name: role, role, expiresAt: null, siteId: null },
    limits: { subscriptionBuffer: 8, mutationRateLimit: { limit: 1, windowSeconds: 1 } },
  } as unknown as GraphQLContext;
  return { schema, document: FEED, variableValues: variables, contextValue };
}

const iterate = (result: AsyncIterable<ExecutionResult> | ExecutionResult) => {
  if (!(Symbol.asyncIterator in result)) throw new Error('not a stream');
  return result[Symbol.asyncIterator]();
};

describe('shared subscriptions', () => {
  it('runs one upstream for subscribers with the same key, and stops it when the last leaves', async () => {
    const source = upstream();
    let calls = 0;
    const subscribe = shared(() => {
      calls += 1;
      return Promise.resolve(source.iterable);
    });
    const first = iterate(await subscribe(argsFor('admin')));
    const second = iterate(await subscribe(argsFor('admin')));
    expect(calls).toBe(1);
    const reads = Promise.all([first.next(), second.next()]);
    await source.emit({ n: 1 });
    expect((await reads).map((read): unknown => read.value)).toEqual([
      { data: { n: 1 } },
      { data: { n: 1 } },
    ]);

    await first.return!();
    const next = second.next();
    await source.emit({ n: 2 });
    expect((await next).value).toEqual({ data: { n: 2 } });
    expect(source.state.stopped).toBe(false);
    await second.return!();
    expect(source.state.stopped).toBe(true);

    // A later subscriber starts a new execution.
    await subscribe(argsFor('admin'));
    expect(calls).toBe(2);
  });

  it('gives another role or other variables an upstream of their own', async () => {
    let calls = 0;
    const subscribe = shared(() => {
      calls += 1;
      return Promise.resolve(upstream().iterable);
    });
    await subscribe(argsFor('admin'));
    await subscribe(argsFor('viewer'));
    await subscribe(argsFor('admin', { unused: 1 }));
    expect(calls).toBe(3);
  });

  it('does not keep a failed subscribe as the answer for the key', async () => {
    let calls = 0;
    const source = upstream();
    const subscribe = shared(() => {
      calls += 1;
      return calls === 1
        ? Promise.reject(new Error('database unavailable'))
        : Promise.resolve(source.iterable);
    });
    await expect(subscribe(argsFor('admin'))).rejects.toThrow('database unavailable');
    const retry = iterate(await subscribe(argsFor('admin')));
    const read = retry.next();
    await source.emit({ n: 1 });
    expect((await read).value).toEqual({ data: { n: 1 } });
    expect(calls).toBe(2);
  });

  it('hands a refusal to the subscriber that caused it and asks again for the next', async () => {
    let calls = 0;
    const subscribe = shared(() => {
      calls += 1;
      return Promise.resolve({ errors: [] } as ExecutionResult);
    });
    expect(await subscribe(argsFor('viewer'))).toEqual({ errors: [] });
    expect(await subscribe(argsFor('viewer'))).toEqual({ errors: [] });
    expect(calls).toBe(2);
  });
});
