import type { ObjectRef } from '@pothos/core';
import { clearAllDataLoaders } from '@pothos/plugin-dataloader';
import type { AppPubSub } from '../../services.js';
import type { AppEvents } from '../../shared/events.js';
import type { GraphQLContext } from '../context.js';
import { builder } from '../builder.js';
import { MissedEvents, boundedFeed, type BoundedFeed } from '../subscription-feed.js';

export { MissedEvents };

const MissedEventsRef = builder.objectType(MissedEvents, {
  name: 'MissedEvents',
  description:
    'This subscriber fell a whole buffer behind and events were dropped: read on through the matching query',
  fields: (t) => ({
    after: t.exposeString('cursor', {
      nullable: true,
      description:
        'The cursor of the last event delivered before the gap: pass it as `after` to attestationResults or auditEvents (with the same filter). Null on deviceEvents and caseEvents: re-read the devices or cases followed.',
    }),
    dropped: t.exposeInt('dropped', { description: 'Events dropped in this gap' }),
  }),
});

/** A subscription's item: one of its events, or the marker of a gap. */
export function feedUnion<T>(name: string, event: ObjectRef<typeof builder.$inferSchemaTypes, T>) {
  return builder.unionType(name, {
    types: [event, MissedEventsRef],
    resolveType: (item) => (item instanceof MissedEvents ? MissedEventsRef : event),
  });
}

/** The source feed of each subscription operation's context (an operation has one root field). */
const sourceFeeds = new WeakMap<GraphQLContext, BoundedFeed<object>>();

/**
 * What every subscription hands graphql-ws and SSE: the events of one topic of the bus that pass
 * its filter (applied here, on the server), through a bounded, metered buffer of its own.
 */
export function subscriberFeed<K extends keyof AppEvents>(
  context: GraphQLContext,
  subscription: string,
  topic: K,
  wanted: (event: AppEvents[K]) => boolean,
  cursorOf: (event: AppEvents[K]) => string | null,
): AsyncIterable<AppEvents[K] | MissedEvents> {
  const { metrics, pubsub } = context.services;
  let unlisten = () => {};
  const feed = boundedFeed<AppEvents[K]>({
    capacity: context.limits.subscriptionBuffer,
    cursorOf,
    onOverflow: () => metrics.subscriptionOverflows.inc({ subscription }),
    onDrop: () => metrics.subscriptionDroppedEvents.inc({ subscription }),
    onReturn: () => unlisten(),
  });
  unlisten = listen(pubsub, topic, (event) => {
    // A filter that throws ends its own subscription with the error, never the shared listener.
    try {
      if (wanted(event)) feed.offer(event);
    } catch (error) {
      feed.end(error instanceof Error ? error : new Error(String(error)));
      unlisten();
    }
  });
  sourceFeeds.set(context, feed);
  return feed;
}

/**
 * The cursor of the item the subscription of `context` handed on last: read right after the
 * executor yields that item's result, it is the result's cursor (null for feeds without cursors).
 */
export function lastSourceCursor(context: GraphQLContext): string | null {
  return sourceFeeds.get(context)?.yieldedCursor ?? null;
}

type Listener = (event: never) => void;
const topicListeners = new WeakMap<AppPubSub, Map<keyof AppEvents, Set<Listener>>>();

/**
 * Calls `listener` with each event of `topic`, from one bus subscription per topic shared by all
 * subscribers: their filters run synchronously as an event arrives, so an event costs a subscriber
 * that does not want it one function call, not a queued item (with 2,000 subscribers over 20 sites,
 * 19 of 20 would be). Returns the function that stops listening.
 */
function listen<K extends keyof AppEvents>(
  pubsub: AppPubSub,
  topic: K,
  listener: (event: AppEvents[K]) => void,
): () => void {
  let topics = topicListeners.get(pubsub);
  if (!topics) topicListeners.set(pubsub, (topics = new Map<keyof AppEvents, Set<Listener>>()));
  let listeners = topics.get(topic);
  if (!listeners) {
    const subscribed = new Set<Listener>();
    topics.set(topic, (listeners = subscribed));
    void (async () => {
      // The bus's own typing of a topic's payload is looser than AppEvents; the map is the contract.
      for await (const event of pubsub.subscribe(topic) as AsyncIterable<never>) {
        for (const each of subscribed) each(event);
      }
    })();
  }
  const registered = listener as Listener;
  listeners.add(registered);
  return () => listeners.delete(registered);
}

/**
 * A feed item as resolvers see it. One subscription keeps one context for its whole life, so the
 * rows an event leads to are read afresh for each event, not from the first one's identity map.
 */
export function freshItem<T>(item: T | MissedEvents, context: GraphQLContext): T | MissedEvents {
  if (item instanceof MissedEvents) return item;
  context.em.clear();
  clearAllDataLoaders(context);
  return item;
}
