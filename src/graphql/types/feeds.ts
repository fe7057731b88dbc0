import type { ObjectRef } from '@pothos/core';
import { clearAllDataLoaders } from '@pothos/plugin-dataloader';
import { filter, pipe } from 'graphql-yoga';
import type { AppEvents } from '../../shared/events.js';
import type { GraphQLContext } from '../context.js';
import { builder } from '../builder.js';
import { MissedEvents, boundedFeed } from '../subscription-feed.js';

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
  // The bus's own typing of a topic's payload is looser than AppEvents; the map is the contract.
  const events = pubsub.subscribe(topic) as AsyncIterable<AppEvents[K]>;
  return boundedFeed(pipe(events, filter(wanted)), {
    capacity: context.limits.subscriptionBuffer,
    cursorOf,
    onOverflow: () => metrics.subscriptionOverflows.inc({ subscription }),
    onDrop: () => metrics.subscriptionDroppedEvents.inc({ subscription }),
  });
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
