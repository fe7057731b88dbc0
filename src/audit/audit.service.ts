import type { EntityManager } from '@mikro-orm/postgresql';
import type { Clock } from '../shared/clock.js';
import type { Tx } from '../shared/transaction.js';
import { AuditEvent } from './audit-event.entity.js';
import { GENESIS_HASH, auditHash } from './audit-chain.js';

/** A security decision to record; `actor` is who made it ("token:<name>", "device:<id>", "system"). */
export interface AuditInput {
  actor: string;
  action: string;
  subject: string;
  details?: Record<string, unknown>;
}

// Any constant works; it only has to be the same for every writer of the chain.
const CHAIN_LOCK_KEY = 0x66_70_61_75; // "fpau"

export class AuditService {
  constructor(
    private readonly clock: Clock,
    private readonly onRecorded: (action: string) => void = () => {},
  ) {}

  /**
   * Appends an event inside the caller's transaction, so the event commits or rolls back with the
   * change it records. The advisory lock serialises writers
   * (across processes too) so two transactions cannot both link to the same predecessor; it is held
   * only from here to commit, so callers record the event as their last statement.
   */
  async record(tx: Tx, input: AuditInput): Promise<AuditEvent> {
    const [event] = await this.recordMany(tx, [input]);
    return event!;
  }

  /** Appends several events, in order, with one lock, one read of the chain's end and one insert. */
  async recordMany(tx: Tx, inputs: readonly AuditInput[]): Promise<AuditEvent[]> {
    if (inputs.length === 0) return [];
    const { em } = tx;
    const connection = em.getConnection();
    await connection.execute(
      'select pg_advisory_xact_lock(?)',
      [CHAIN_LOCK_KEY],
      'run',
      em.getTransactionContext(),
    );
    const [last] = await connection.execute<{ seq: string; hash: string }[]>(
      'select seq, hash from audit_event order by seq desc limit 1',
      [],
      'all',
      em.getTransactionContext(),
    );
    let seq = last ? BigInt(last.seq) : 0n;
    let prevHash = last?.hash ?? GENESIS_HASH;
    const occurredAt = this.clock.now();
    const events = inputs.map((input) => {
      seq += 1n;
      const event = new AuditEvent();
      event.seq = seq.toString();
      event.occurredAt = occurredAt;
      event.actor = input.actor;
      event.action = input.action;
      event.subject = input.subject;
      event.details = input.details ?? {};
      event.prevHash = prevHash;
      event.hash = auditHash(event, event.prevHash);
      prevHash = event.hash;
      em.persist(event);
      return event;
    });
    await em.flush();
    for (const event of events) {
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
    }
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
