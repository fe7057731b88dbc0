import { BigIntType, EntitySchema } from '@mikro-orm/core';

/** One link of the append-only, hash-chained audit trail. Rows are never updated or deleted. */
export class AuditEvent {
  /** Position in the chain; gap-free and strictly increasing (also the SIEM cursor). */
  seq!: string;
  occurredAt!: Date;
  actor!: string;
  action!: string;
  subject!: string;
  details!: Record<string, unknown>;
  prevHash!: string;
  /** SHA-256 over the canonical JSON of this row's content and `prevHash`. */
  hash!: string;
}

export const AuditEventSchema = new EntitySchema<AuditEvent>({
  class: AuditEvent,
  tableName: 'audit_event',
  properties: {
    // Strings, not JS bigints: they travel as JSON to GraphQL and into the hash unchanged.
    seq: { type: new BigIntType('string'), primary: true, autoincrement: false },
    occurredAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    actor: { type: 'string', length: 200 },
    action: { type: 'string', length: 100 },
    subject: { type: 'string', length: 300 },
    details: { type: 'json' },
    prevHash: { type: 'string', length: 64 },
    hash: { type: 'string', length: 64 },
  },
});
