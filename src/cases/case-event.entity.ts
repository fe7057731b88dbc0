import { BigIntType, EntitySchema } from '@mikro-orm/core';

export const CASE_EVENT_KINDS = [
  'OPENED',
  'NOTE',
  'STATUS_CHANGED',
  'EVIDENCE',
  'ATTACHMENT',
  'ASSIGNED',
  'DEVICE_LINKED',
  /** An operator isolated a linked device, or released it (DeviceIsolationService). */
  'DEVICE_ISOLATED',
  'DEVICE_RELEASED',
] as const;
export type CaseEventKind = (typeof CASE_EVENT_KINDS)[number];

/**
 * One entry of a case's timeline. Rows are only ever inserted, so concurrent writers never lose each
 * other's entries. `seq` only grows; every writer holds the case row lock while it inserts, so within
 * one case the order of `seq` is the order of commits and a timeline cursor never skips an entry.
 */
export class CaseEvent {
  seq!: string;
  caseRef!: string;
  kind!: CaseEventKind;
  actor!: string;
  at!: Date;
  /** A note's text, a status change's reason, evidence's headline. */
  body: string | null = null;
  /** The structured part: evidence, `{from, to}`, an attachment, a linked device. */
  payload: Record<string, unknown> = {};
}

export const CaseEventSchema = new EntitySchema<CaseEvent>({
  class: CaseEvent,
  tableName: 'case_event',
  properties: {
    seq: { type: new BigIntType('string'), primary: true, autoincrement: true },
    caseRef: { type: 'uuid', fieldName: 'case_ref' },
    kind: { type: 'string', length: 24 },
    actor: { type: 'string', length: 200 },
    at: { type: 'datetime', columnType: 'timestamptz(3)' },
    body: { type: 'text', nullable: true },
    payload: { type: 'json' },
  },
});
