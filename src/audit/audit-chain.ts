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
 * SHA-256 over the RFC 8785 canonical JSON of the row's content plus the previous row's hash, so a
 * change to any field of any row, a deleted row or a reordering breaks every link after it.
 */
export function auditHash(content: AuditContent, prevHash: string): string {
  const canonical = canonicalJson({
    seq: content.seq,
    occurredAt: content.occurredAt.toISOString(),
    actor: content.actor,
    action: content.action,
    subject: content.subject,
    details: content.details,
    prevHash,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
