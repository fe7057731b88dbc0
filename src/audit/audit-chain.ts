import { createHash } from 'node:crypto';
import { canonicalJson } from '../shared/jcs.js';

/** The hash that stands before the first event of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditContent {
  seq: string;
  occurredAt: Date;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
}

/**
 * The canonical text of a row around its two chain-assigned values: the text hashed is
 * `head + prevHash + '","seq":"' + seq + tail`. The database appends with these parts (it alone
 * knows the predecessor while it holds the chain head), and verification hashes the same text.
 * Written out by hand because RFC 8785 sorts the members by name (action, actor, details,
 * occurredAt, prevHash, seq, subject); prevHash (hex) and seq (decimal) need no escaping.
 */
export function canonicalAuditParts(content: Omit<AuditContent, 'seq'>): { head: string; tail: string } {
  return {
    head:
      `{"action":${canonicalJson(content.action)},"actor":${canonicalJson(content.actor)}` +
      `,"details":${canonicalJson(content.details)}` +
      `,"occurredAt":${canonicalJson(content.occurredAt.toISOString())},"prevHash":"`,
    tail: `","subject":${canonicalJson(content.subject)}}`,
  };
}

/** Joins the canonical text between the predecessor's hash and the sequence number. */
export const SEQ_SEPARATOR = '","seq":"';

/**
 * SHA-256 over the RFC 8785 canonical JSON of the row's content plus the previous row's hash, so a
 * change to any field of any row, a deleted row or a reordering breaks every link after it.
 */
export function auditHash(content: AuditContent, prevHash: string): string {
  const { head, tail } = canonicalAuditParts(content);
  return createHash('sha256')
    .update(head + prevHash + SEQ_SEPARATOR + content.seq + tail)
    .digest('hex');
}
