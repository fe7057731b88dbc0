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

/** Where `audit_append` put an event in the chain. */
interface AuditLink {
  seq: string;
  prev_hash: string;
  hash: string;
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
   * hashing the canonical parts computed here (audit-chain.ts), and moves the head. The head's row
   * lock serialises appenders across every process and lasts until commit, so the caller's pending
   * changes are flushed first and the append is the transaction's last statement.
   */
  async recordMany(tx: Tx, inputs: readonly AuditInput[]): Promise<AuditEvent[]> {
    if (inputs.length === 0) return [];
    const { em } = tx;
    // Outside a transaction the change and its events would commit apart (TransactionRunner.single
    // hands out such a Tx): a change made in one statement uses recordInStatement instead.
    if (!em.isInTransaction()) {
      throw new Error('audit events are appended in the transaction of the change they record');
    }
    await em.flush();
    const append = this.append(inputs);
    const links = await em
      .getConnection()
      .execute<AuditLink[]>(
        `select seq::text as seq, prev_hash, hash from audit_append(?::jsonb, ?, ?)`,
        append.params,
        'all',
        em.getTransactionContext(),
      );
    return this.linked(tx, append.events, links);
  }

  /**
   * Appends `inputs` in the one statement that makes the change they record, run through
   * `TransactionRunner.single`: atomic without BEGIN/COMMIT round trips, the chain head locked only
   * while that statement runs and commits. `change.ctes` are its data-modifying CTEs (`name as
   * (...)`, comma-separated); the events are appended only if the CTE named `change.when` returns a row. Returns the rows of
   * `change.select`, a query over those CTEs: no row, no change and no event.
   */
  async recordInStatement<Row extends object>(
    tx: Tx,
    change: { ctes: string; when: string; select: string; params: readonly unknown[] },
    inputs: readonly AuditInput[],
  ): Promise<Row[]> {
    const append = this.append(inputs);
    const rows = await tx.em.getConnection().execute<Array<Row & { audit_links: AuditLink[] }>>(
      `with ${change.ctes},
       audited as (
         select coalesce(jsonb_agg(jsonb_build_object(
                  'seq', seq::text, 'prev_hash', prev_hash, 'hash', hash) order by seq), '[]') as audit_links
           from audit_append(
             case when exists (select 1 from ${change.when}) then ?::jsonb else '[]'::jsonb end, ?, ?)
       )
       select changed.*, audited.audit_links from (${change.select}) changed cross join audited`,
      [...change.params, ...append.params],
      'all',
      tx.em.getTransactionContext(),
    );
    const [first] = rows;
    if (first) this.linked(tx, append.events, first.audit_links);
    return rows.map(({ audit_links: _links, ...row }) => row as unknown as Row);
  }

  /** The events to append and the parameters of `audit_append` (migration 20261129190000). */
  private append(inputs: readonly AuditInput[]): { events: AuditEvent[]; params: unknown[] } {
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
    const parts = events.map((event) => ({
      ...canonicalAuditParts(event),
      actor: event.actor,
      action: event.action,
      subject: event.subject,
      details: event.details,
    }));
    return { events, params: [JSON.stringify(parts), occurredAt, SEQ_SEPARATOR] };
  }

  /** Completes the events with the links the database gave them and publishes them after commit. */
  private linked(tx: Tx, events: AuditEvent[], links: readonly AuditLink[]): AuditEvent[] {
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
