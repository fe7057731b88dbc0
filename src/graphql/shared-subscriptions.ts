import {
  execute,
  getNamedType,
  getOperationAST,
  isUnionType,
  Kind,
  print,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Metrics } from '../observability/metrics.js';
import { canonicalJson } from '../shared/jcs.js';
import type { GraphQLContext } from './context.js';
import { MissedEvents, boundedFeed, type BoundedFeed } from './subscription-feed.js';
import { lastSourceCursor } from './types/feeds.js';

type SubscribeResult = AsyncIterable<ExecutionResult> | ExecutionResult;
type SubscribeFn = (args: ExecutionArgs) => SubscribeResult | Promise<SubscribeResult>;

/** One result of the shared execution, with the cursor of the event it came from. */
interface Delivery {
  result: ExecutionResult;
  cursor: string | null;
}

/**
 * Subscribers that asked for the same thing share one execution per event. Subscriptions to a feed
 * (a union with MissedEvents) with the same document, operation, variables and authorization (role
 * and site) get the same result for every event: the event is filtered, its selection resolved and
 * its rows read once for all of them, not once each. With 2,000 dashboards over 20 sites, an event
 * is executed once instead of 100 times. Each subscriber still has a bounded buffer of its own (a
 * slow one is given a MissedEvents marker and never holds up the others) and keeps its own socket,
 * authentication and token re-checks; the group's execution ends when its last subscriber leaves.
 *
 * Authorization is decided when the group's execution starts (scope checks run in the field's
 * subscribe) and again for every field of every event, for the role and site in the key: a
 * subscriber only joins a group whose authorization is its own.
 */
export function sharedSubscriptionsPlugin(metrics: Metrics): Plugin<GraphQLContext> {
  const groups = new Map<string, Promise<Group | ExecutionResult>>();

  async function join(args: ExecutionArgs, subscribe: SubscribeFn): Promise<SubscribeResult> {
    const feedName = sharedFeedName(args);
    const context = args.contextValue as GraphQLContext;
    if (feedName === null) return subscribe(args);
    const key = groupKey(args, context);
    for (;;) {
      let pending = groups.get(key);
      if (!pending) {
        const opening: Promise<Group | ExecutionResult> = openGroup(args, subscribe, feedName, () => {
          if (groups.get(key) === opening) groups.delete(key);
        });
        groups.set(key, (pending = opening));
      }
      let group: Group | ExecutionResult;
      try {
        group = await pending;
      } catch (error) {
        // A subscribe that threw (a database error, say) must not stay the answer for this key.
        if (groups.get(key) === pending) groups.delete(key);
        throw error;
      }
      if (!(group instanceof Group)) {
        // Refused at subscribe time (the same answer for every subscriber of the key): the next
        // subscriber asks again rather than inheriting a failure that may have been transient.
        if (groups.get(key) === pending) groups.delete(key);
        return group;
      }
      const member = group.join(context.limits.subscriptionBuffer);
      if (member) return member;
      // The group ended between its creation and this join: start another.
    }
  }

  async function openGroup(
    args: ExecutionArgs,
    subscribe: SubscribeFn,
    feedName: string,
    forget: () => void,
  ): Promise<Group | ExecutionResult> {
    const upstream = await subscribe(args);
    if (!(Symbol.asyncIterator in upstream)) return upstream;
    return new Group(args, upstream, feedName, metrics, forget);
  }

  return {
    onSubscribe({ subscribeFn, setSubscribeFn }) {
      const inner = subscribeFn as SubscribeFn;
      setSubscribeFn(((args: ExecutionArgs) => join(args, inner)) as typeof subscribeFn);
    },
  };
}

/** One execution of a subscription, fanned out to the buffers of its subscribers. */
class Group {
  private readonly members = new Set<BoundedFeed<Delivery>>();
  private ended = false;
  private pumping = false;
  private readonly upstream: AsyncIterator<ExecutionResult>;

  constructor(
    private readonly args: ExecutionArgs,
    upstream: AsyncIterable<ExecutionResult>,
    private readonly feedName: string,
    private readonly metrics: Metrics,
    private readonly forget: () => void,
  ) {
    this.upstream = upstream[Symbol.asyncIterator]();
    metrics.subscriptionExecutions.inc({ subscription: feedName });
  }

  /** A subscriber's own view of the group's results; null once the group has ended. */
  join(capacity: number): AsyncIterableIterator<ExecutionResult> | null {
    if (this.ended) return null;
    const subscription = this.feedName;
    const member: BoundedFeed<Delivery> = boundedFeed<Delivery>({
      capacity,
      cursorOf: (delivery) => delivery.cursor,
      onOverflow: () => this.metrics.subscriptionOverflows.inc({ subscription }),
      onDrop: () => this.metrics.subscriptionDroppedEvents.inc({ subscription }),
      onReturn: () => this.leave(member),
    });
    this.members.add(member);
    this.metrics.subscriptionMembers.inc({ subscription });
    // Pulled only once someone is there to be handed the results: nothing is read for no one.
    if (!this.pumping) {
      this.pumping = true;
      void this.pump();
    }
    const results: AsyncIterableIterator<ExecutionResult> = {
      next: async () => {
        const next = await member.next();
        if (next.done) return next;
        const item = next.value;
        return {
          value: item instanceof MissedEvents ? await this.markerResult(item) : item.result,
          done: false,
        };
      },
      return: async () => {
        await member.return();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => results,
    };
    return results;
  }

  private leave(member: BoundedFeed<Delivery>): void {
    if (!this.members.delete(member)) return;
    this.metrics.subscriptionMembers.dec({ subscription: this.feedName });
    if (this.members.size > 0 || this.ended) return;
    this.finish();
    void this.upstream.return?.();
  }

  private finish(): void {
    this.ended = true;
    this.forget();
    this.metrics.subscriptionExecutions.dec({ subscription: this.feedName });
  }

  private async pump(): Promise<void> {
    const context = this.args.contextValue as GraphQLContext;
    try {
      for (;;) {
        const next = await this.upstream.next();
        if (next.done || this.ended) break;
        // The executor pulls one event per result, so the feed's last handed-out cursor is this one's.
        const delivery: Delivery = { result: next.value, cursor: lastSourceCursor(context) };
        for (const member of this.members) member.offer(delivery);
      }
      this.endMembers();
    } catch (error) {
      this.endMembers(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private endMembers(error?: Error): void {
    if (!this.ended) this.finish();
    for (const member of this.members) member.end(error);
    this.metrics.subscriptionMembers.dec({ subscription: this.feedName }, this.members.size);
    this.members.clear();
  }

  /** A subscriber's own gap marker, shaped by the document like any event of the feed. */
  private async markerResult(marker: MissedEvents): Promise<ExecutionResult> {
    return execute({ ...this.args, rootValue: marker });
  }
}

/**
 * The root field's name when the operation subscribes to a feed that can be shared; null for
 * anything else (a throttled snapshot such as fleetSummary keeps one producer per subscriber).
 */
function sharedFeedName(args: ExecutionArgs): string | null {
  const operation = getOperationAST(args.document, args.operationName);
  const subscriptionType = args.schema.getSubscriptionType();
  const selection = operation?.selectionSet.selections[0];
  if (!subscriptionType || selection?.kind !== Kind.FIELD) return null;
  const field = subscriptionType.getFields()[selection.name.value];
  const type = field && getNamedType(field.type);
  if (!type || !isUnionType(type) || !type.getTypes().some((member) => member.name === 'MissedEvents')) {
    return null;
  }
  return field.name;
}

const printed = new WeakMap<DocumentNode, string>();

/** Everything that decides what a subscriber is sent. */
function groupKey(args: ExecutionArgs, context: GraphQLContext): string {
  let text = printed.get(args.document);
  if (text === undefined) printed.set(args.document, (text = print(args.document)));
  return canonicalJson([
    context.viewer.role,
    context.viewer.siteId,
    args.operationName ?? null,
    text,
    args.variableValues ?? {},
  ]);
}
