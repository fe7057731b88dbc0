import { AuditEvent } from '../../audit/audit-event.entity.js';
import { builder } from '../builder.js';
import { encodeCursor } from '../cursor.js';
import { validKey } from '../nodes.js';
import { rowNode } from '../row-node.js';
import { seqPage } from '../seq-page.js';
import { feedUnion, subscriberFeed } from './feeds.js';

const CURSOR_KIND = 'audit';

interface AuditEventShape {
  seq: string;
  occurredAt: Date | string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
  hash: string;
}

const AuditEventRef = builder.objectRef<AuditEventShape>('AuditEvent').implement({
  description: 'One link of the tamper-evident audit trail',
  // On the type, so every path to an event (the list, the feed, `node`) asks the same.
  authScopes: { admin: true },
  fields: (t) => ({
    seq: t.exposeString('seq', { description: 'Position in the chain; gap-free and increasing' }),
    cursor: t.string({ resolve: (event) => encodeCursor(CURSOR_KIND, event.seq) }),
    occurredAt: t.field({ type: 'DateTime', resolve: (event) => event.occurredAt }),
    actor: t.exposeString('actor'),
    action: t.exposeString('action'),
    subject: t.exposeString('subject'),
    details: t.field({ type: 'JSON', resolve: (event) => event.details }),
    hash: t.exposeString('hash'),
  }),
});

rowNode(AuditEventRef, AuditEvent, 'seq', validKey.sequence);

builder.queryField('auditEvents', (t) =>
  t.connection({
    type: AuditEventRef,
    authScopes: { admin: true },
    description: 'The audit trail in chain order; resume from any cursor without gaps or duplicates',
    resolve: (_root, args, context) => seqPage(context, args, AuditEvent, CURSOR_KIND, {}, 'oldest-first'),
  }),
);

builder.subscriptionField('auditEvents', (t) =>
  t.field({
    type: feedUnion('AuditFeedEvent', AuditEventRef),
    authScopes: { admin: true },
    description: 'Each audit event as it is committed; its cursor resumes the auditEvents query',
    subscribe: (_root, _args, context) =>
      subscriberFeed(
        context,
        'auditEvents',
        'audit.recorded',
        () => true,
        (event) => encodeCursor(CURSOR_KIND, event.seq),
      ),
    resolve: (item) => item,
  }),
);
