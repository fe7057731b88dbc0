import type { ObjectRef } from '@pothos/core';
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

/** What every subscription hands graphql-ws and SSE: its events through a bounded, metered buffer. */
export function subscriberFeed<T extends object>(
  context: GraphQLContext,
  subscription: string,
  source: AsyncIterable<T>,
  cursorOf: (event: T) => string | null,
): AsyncIterable<T | MissedEvents> {
  const { metrics } = context.services;
  return boundedFeed(source, {
    capacity: context.limits.subscriptionBuffer,
    cursorOf,
    onOverflow: () => metrics.subscriptionOverflows.inc({ subscription }),
    onDrop: () => metrics.subscriptionDroppedEvents.inc({ subscription }),
  });
}
