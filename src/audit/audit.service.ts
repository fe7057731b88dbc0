import type { EntityManager } from '@mikro-orm/postgresql';
import type { Clock } from '../shared/clock.js';
import type { Tx } from '../shared/transaction.js';
import { AuditEvent } from './audit-event.entity.js';
import { GENESIS_HASH, SEQ_SEPARATOR, auditHash, canonicalAuditParts } from './audit-chain.js';

/** A security decision to record; `actor` is who made it ("token:<name>", "device:<id>", "system"). */
export interface AuditInput {
  actor: string;
  action: string;
  subject: string;
  details?: Record<string, unknown>;
}

export class AuditService {
  constructor(
    private readonly clock: Clock,
    private readonly onRecorded: (action: string) => void = () => {},
  ) {}

  /**
   * Appends an event inside the caller's transaction, so the event commits or rolls back with the
   * change it records. See `recordMany`.
   */
  async record(tx: Tx, input: AuditInput): Promise<AuditEvent> {
    const [event] = await this.recordMany(tx, [input]);
    return event!;
  }

  /**
   * Appends several events, in order, in one statement: `audit_append` (migration
   * 20261129190000) locks the single-row chain head, links each event to its predecessor by
   * hashing the canonical parts computed here, and moves the head. The head's row lock serialises
   * appenders across every process and lasts until commit, so the caller's pending changes are
   * flushed first and the append is the transaction's last statement.
   */
  async recordMany(tx: Tx, inputs: readonly AuditInput[]): Promise<AuditEvent[]> {
    if (inputs.length === 0) return [];
    const { em } = tx;
    await em.flush();
    const occurredAt = this.clock.now();
    const events = inputs.map((input) => {
      const event = new AuditEvent();
      event.occurredAt = occurredAt;
      event.actor = input.actor;
      event.action = input.action;
      event.subject = input.subject;
      event.details = input.details ?? {};
      return event;
    });
    const links = await em.getConnection().execute<{ seq: string; prev_hash: string; hash: string }[]>(
      'select seq::text as seq, prev_hash, hash from audit_append(?::jsonb, ?, ?)',
      [
        JSON.stringify(
          events.map((event) => ({
            ...canonicalAuditParts(event),
            actor: event.actor,
            action: event.action,
            subject: event.subject,
            details: event.details,
          })),
        ),
        occurredAt,
        SEQ_SEPARATOR,
      ],
      'all',
      em.getTransactionContext(),
    );
    events.forEach((event, index) => {
      const link = links[index]!;
      event.seq = link.seq;
      event.prevHash = link.prev_hash;
      event.hash = link.hash;
      this.onRecorded(event.action);
      tx.emit('audit.recorded', {
        seq: event.seq,
        occurredAt: event.occurredAt.toISOString(),
        actor: event.actor,
        action: event.action,
        subject: event.subject,
        details: event.details,
        hash: event.hash,
      });
    });
    return events;
  }
}

export interface ChainVerification {
  ok: boolean;
  checked: number;
  /** The first row whose stored hash or link does not match, when `ok` is false. */
  brokenAt?: { seq: string; reason: 'hash-mismatch' | 'link-mismatch' | 'sequence-gap' };
}

/**
 * Walks the chain in order, in pages, recomputing every hash. Reports the first broken row; progress
 * goes to `onProgress` so a long trail shows it is moving.
 */
export async function verifyAuditChain(
  em: EntityManager,
  onProgress?: (checked: number) => void,
  pageSize = 5_000,
): Promise<ChainVerification> {
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1n;
  let checked = 0;
  for (;;) {
    const page = await em.find(
      AuditEvent,
      { seq: { $gte: expectedSeq.toString() } },
      { orderBy: { seq: 'asc' }, limit: pageSize },
    );
    for (const row of page) {
      if (BigInt(row.seq) !== expectedSeq) {
        return { ok: false, checked, brokenAt: { seq: expectedSeq.toString(), reason: 'sequence-gap' } };
      }
      if (row.prevHash !== prevHash)
        return { ok: false, checked, brokenAt: { seq: row.seq, reason: 'link-mismatch' } };
      if (auditHash(row, row.prevHash) !== row.hash) {
        return { ok: false, checked, brokenAt: { seq: row.seq, reason: 'hash-mismatch' } };
      }
      prevHash = row.hash;
      expectedSeq += 1n;
      checked += 1;
    }
    em.clear();
    onProgress?.(checked);
    if (page.length < pageSize) return { ok: true, checked };
  }
}
