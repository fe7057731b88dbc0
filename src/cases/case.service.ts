import { randomUUID } from 'node:crypto';
import { LockMode, UniqueConstraintViolationException, type FilterQuery } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { plainRows, selectList } from '../db/plain-rows.js';
import { Device } from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import { ConflictError, DeviceNotFoundError, DomainError, InvalidTransitionError } from '../shared/errors.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';
import { CaseDevice } from './case-device.entity.js';
import { CaseEvent, type CaseEventKind } from './case-event.entity.js';
import { Case, type CaseSeverity, type CaseSource, type CaseStatus } from './case.entity.js';
import { CaseNotFoundError } from './case.errors.js';
import {
  DEDUPLICATED_STATUSES,
  assertEditable,
  checkAttachment,
  checkTransition,
  countsAsOpen,
  isDeduplicated,
  normalizeAssignee,
  requireText,
} from './case.rules.js';

export interface OpenCaseInput {
  title: string;
  severity: CaseSeverity;
  source: CaseSource;
  /** The device the case is about (its row id); automatic cases are deduplicated on it. */
  deviceRef: string | null;
  evidence: Record<string, unknown>;
  actor: string;
  /** Further devices (row ids) the case is about besides `deviceRef`. */
  linkedDeviceRefs?: readonly string[];
}

/** An operator's containment action on one device, for the timelines of its cases. */
export interface DeviceActionInput {
  kind: Extract<CaseEventKind, 'DEVICE_ISOLATED' | 'DEVICE_RELEASED'>;
  deviceRef: string;
  /** The operator's reason. */
  reason: string;
  payload: Record<string, unknown>;
  actor: string;
  /** Title and severity of the MANUAL case opened when the device has no open case. */
  caseTitle: string;
  caseSeverity: CaseSeverity;
}

/** A case an operator opens by hand. */
export interface ManualCaseInput {
  title: string;
  severity: CaseSeverity;
  /** Device ids (business keys); the first is the primary device. */
  deviceIds: readonly string[];
  note: string | null;
  assignee: string | null;
}

export interface CaseListFilter {
  status?: readonly CaseStatus[];
  source?: readonly CaseSource[];
  severity?: readonly CaseSeverity[];
  deviceId?: string;
  assignee?: string;
}

/** Keyset paging; `reversed` reads against the natural order (newest case first, oldest entry first). */
export interface KeysetPage {
  after: string | undefined;
  before: string | undefined;
  limit: number;
  reversed: boolean;
}

// Bounds the open-or-append loop: a conflict means a racing transaction committed the open case, so
// the next look finds it; only a case closed again within that instant needs another round.
const OPEN_ATTEMPTS = 3;

const DEDUPLICATED_PREDICATE = `"status" in (${DEDUPLICATED_STATUSES.map((status) => `'${status}'`).join(', ')}) and "source" <> 'MANUAL'`;

/**
 * Cases and their timelines. Automatic cases are opened inside the caller's transaction, so a case
 * exists exactly when its cause committed; operator edits are their own transactions. Every writer
 * of a case locks its row first, so edits of one case are serialised (nothing is lost, the status
 * checked is the status changed) while different cases proceed in parallel.
 */
export class CaseService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  /**
   * Opens a case, or adds the new evidence to the timeline of the device's open case of the same
   * source: never two open cases for one device and cause, even when instances race (the partial
   * unique index `case_record_one_open` decides, the loser appends). A RESOLVED case that receives
   * new evidence goes back to INVESTIGATING: the fix did not hold.
   */
  async openOrAppend(tx: Tx, input: OpenCaseInput): Promise<Case> {
    const deduplicated = input.deviceRef !== null && isDeduplicated(input.source);
    for (let attempt = 1; ; attempt++) {
      if (deduplicated) {
        const open = await tx.em.findOne(
          Case,
          { deviceRef: input.deviceRef, source: input.source, status: { $in: [...DEDUPLICATED_STATUSES] } },
          { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
        );
        if (open) {
          await this.appendEvidence(tx, open, input);
          return open;
        }
      }
      const created = await this.insertCase(tx, input);
      if (created) {
        await this.audit.record(tx, {
          actor: input.actor,
          action: 'case.opened',
          subject: `case:${created.number}`,
          details: {
            source: input.source,
            severity: input.severity,
            deviceRef: input.deviceRef,
            title: input.title,
          },
        });
        return created;
      }
      if (attempt === OPEN_ATTEMPTS) {
        throw new ConflictError('the open case of this device changed repeatedly; retry', 'case-contended');
      }
    }
  }

  /**
   * Records a containment action on a device (isolation, release) in the timeline of every open case
   * the device is linked to. With none open it opens a MANUAL case for it: a SOC must always find why
   * a device was cut off or let back, so the action never goes without a case. Runs in the caller's
   * transaction; returns the numbers of the cases that recorded it.
   */
  async recordDeviceAction(tx: Tx, input: DeviceActionInput): Promise<number[]> {
    const links = await tx.em.find(CaseDevice, { deviceRef: input.deviceRef });
    const open =
      links.length === 0
        ? []
        : await tx.em.find(
            Case,
            { id: { $in: links.map((link) => link.caseRef) }, status: { $in: [...DEDUPLICATED_STATUSES] } },
            // Number order: two actions on devices that share cases take the locks in the same order.
            { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true, orderBy: { number: 'asc' } },
          );
    if (open.length === 0) {
      const opened = await this.insertCase(tx, {
        title: input.caseTitle,
        severity: input.caseSeverity,
        source: 'MANUAL',
        deviceRef: input.deviceRef,
        evidence: { reason: input.reason, ...input.payload },
        actor: input.actor,
      });
      // MANUAL cases are not deduplicated, so the insert cannot have been skipped.
      if (!opened) throw new Error('manual case insert skipped');
      await this.audit.record(tx, {
        actor: input.actor,
        action: 'case.opened',
        subject: `case:${opened.number}`,
        details: {
          source: 'MANUAL',
          severity: input.caseSeverity,
          deviceRef: input.deviceRef,
          title: input.caseTitle,
        },
      });
      open.push(opened);
    }
    for (const record of open) {
      await this.publish(tx, record, [
        this.event(record, input.kind, input.actor, input.reason, input.payload),
      ]);
    }
    return open.map((record) => record.number);
  }

  /** An operator opens a case about zero or more devices. */
  async open(em: EntityManager, input: ManualCaseInput, actor: string): Promise<Case> {
    return this.change(em, null, actor, 'open', async (tx) => {
      const title = requireText('title', input.title, 3, 300);
      const devices = await this.devicesByIds(tx.em, input.deviceIds);
      const record = await this.insertCase(tx, {
        title,
        severity: input.severity,
        source: 'MANUAL',
        deviceRef: devices[0]?.id ?? null,
        evidence: {},
        actor,
        linkedDeviceRefs: devices.slice(1).map((device) => device.id),
      });
      // MANUAL cases are not deduplicated, so the insert cannot have been skipped.
      if (!record) throw new Error('manual case insert skipped');
      const events: CaseEvent[] = [];
      if (input.note !== null && input.note.trim() !== '')
        events.push(this.event(record, 'NOTE', actor, requireText('note', input.note, 1, 10_000)));
      const assignee = normalizeAssignee(input.assignee);
      if (assignee !== null) events.push(this.assignTo(record, assignee, actor));
      await this.publish(tx, record, events);
      await this.audit.record(tx, {
        actor,
        action: 'case.opened',
        subject: `case:${record.number}`,
        details: { source: 'MANUAL', severity: input.severity, deviceIds: input.deviceIds, title, assignee },
      });
      return record;
    });
  }

  async addNote(em: EntityManager, number: number, note: string, actor: string): Promise<CaseEvent> {
    return this.change(em, number, actor, 'note', async (tx) => {
      const record = await this.locked(tx, number);
      assertEditable(record.status, 'NOTE');
      const text = requireText('note', note, 1, 10_000);
      const event = this.event(record, 'NOTE', actor, text);
      await this.publish(tx, record, [event]);
      await this.audit.record(tx, {
        actor,
        action: 'case.note-added',
        subject: `case:${number}`,
        details: { length: text.length },
      });
      return event;
    });
  }

  async attach(
    em: EntityManager,
    number: number,
    name: string,
    mediaType: string,
    content: unknown,
    actor: string,
  ): Promise<CaseEvent> {
    return this.change(em, number, actor, 'attach', async (tx) => {
      const record = await this.locked(tx, number);
      assertEditable(record.status, 'ATTACHMENT');
      const attachment = checkAttachment(name, mediaType, content);
      const event = this.event(record, 'ATTACHMENT', actor, attachment.name, { ...attachment });
      await this.publish(tx, record, [event]);
      await this.audit.record(tx, {
        actor,
        action: 'case.attachment-added',
        subject: `case:${number}`,
        details: { name: attachment.name, mediaType: attachment.mediaType, size: attachment.size },
      });
      return event;
    });
  }

  async assign(em: EntityManager, number: number, assignee: string | null, actor: string): Promise<Case> {
    return this.change(em, number, actor, 'assign', async (tx) => {
      const record = await this.locked(tx, number);
      assertEditable(record.status, 'ASSIGNED');
      const previous = record.assignee;
      const event = this.assignTo(record, normalizeAssignee(assignee), actor);
      await this.publish(tx, record, [event]);
      await this.audit.record(tx, {
        actor,
        action: 'case.assigned',
        subject: `case:${number}`,
        details: { from: previous, to: record.assignee },
      });
      return record;
    });
  }

  async linkDevice(em: EntityManager, number: number, deviceId: string, actor: string): Promise<Case> {
    return this.change(em, number, actor, 'link-device', async (tx) => {
      const record = await this.locked(tx, number);
      assertEditable(record.status, 'DEVICE_LINKED');
      const [device] = await this.devicesByIds(tx.em, [deviceId]);
      const linked = await tx.em.count(CaseDevice, { caseRef: record.id, deviceRef: device!.id });
      if (linked) throw new ConflictError(`device ${deviceId} is already linked to case ${number}`);
      this.link(tx, record, device!.id, actor);
      const event = this.event(record, 'DEVICE_LINKED', actor, null, { deviceId });
      await this.publish(tx, record, [event]);
      await this.audit.record(tx, {
        actor,
        action: 'case.device-linked',
        subject: `case:${number}`,
        details: { deviceId },
      });
      return record;
    });
  }

  /** The one way a case changes status; CLOSED -> OPEN is the explicit reopen. */
  async setStatus(
    em: EntityManager,
    number: number,
    status: CaseStatus,
    reason: string | null,
    actor: string,
  ): Promise<Case> {
    return this.change(em, number, actor, 'set-status', async (tx) => {
      const record = await this.locked(tx, number);
      const from = record.status;
      const why = checkTransition(from, status, reason);
      if (!countsAsOpen(from) && countsAsOpen(status)) await this.refuseSecondOpen(tx, record);
      const event = this.moveTo(record, status, why, actor);
      await this.publish(tx, record, [event]);
      await this.audit.record(tx, {
        actor,
        action: 'case.status-changed',
        subject: `case:${number}`,
        details: { from, to: status, reason: why },
      });
      return record;
    });
  }

  // Queries

  async findByNumber(em: EntityManager, number: number): Promise<Case | null> {
    return em.findOne(Case, { number });
  }

  /** Newest first (by number); `reversed` for pages read backwards. */
  async list(em: EntityManager, filter: CaseListFilter, page: KeysetPage): Promise<Case[]> {
    const keyset: Array<FilterQuery<Case>> = [];
    if (page.after !== undefined) keyset.push({ number: { $lt: Number(page.after) } });
    if (page.before !== undefined) keyset.push({ number: { $gt: Number(page.before) } });
    return em.find(
      Case,
      { $and: [await this.listWhere(em, filter), ...keyset] },
      { orderBy: { number: page.reversed ? 'asc' : 'desc' }, limit: page.limit },
    );
  }

  async count(em: EntityManager, filter: CaseListFilter): Promise<number> {
    return em.count(Case, await this.listWhere(em, filter));
  }

  /**
   * The cases of each device (row ids) it is linked to, newest first, as plain rows for reading: one
   * statement for any number of devices.
   */
  async casesOfDevices(
    em: EntityManager,
    deviceRefs: readonly string[],
    statuses: readonly CaseStatus[] | undefined,
  ): Promise<Case[][]> {
    if (deviceRefs.length === 0 || statuses?.length === 0) return deviceRefs.map(() => []);
    const rows = await plainRows<Case, { linkedDeviceRef: string }>(
      em,
      Case,
      `select ${selectList(em, Case, 'c')}, l."device_ref" as "linkedDeviceRef"
         from "case_device" l join "case_record" c on c."id" = l."case_ref"
        where l."device_ref" in (?)${statuses ? ' and c."status" in (?)' : ''}
        order by c."number" desc`,
      statuses ? [deviceRefs, statuses] : [deviceRefs],
    );
    const casesOf = groupBy(
      rows,
      (row) => row.linkedDeviceRef,
      ({ linkedDeviceRef: _link, ...record }): Case => record,
    );
    return deviceRefs.map((ref) => casesOf.get(ref) ?? []);
  }

  /**
   * The linked devices of each case (row ids): the device it was opened about first, then in link
   * order (device id among links of the same instant). Two statements for any number of cases.
   */
  async devicesOfCases(em: EntityManager, caseRefs: readonly string[]): Promise<Device[][]> {
    const links = await em.getConnection().execute<{ case_ref: string; device_ref: string }[]>(
      `select l."case_ref", l."device_ref" from "case_device" l
         join "case_record" c on c."id" = l."case_ref" join "device" d on d."id" = l."device_ref"
        where l."case_ref" in (${caseRefs.map(() => '?').join(', ')})
        order by (l."device_ref" = c."device_ref") is true desc, l."linked_at", d."device_id"`,
      [...caseRefs],
    );
    const devices = await em.find(Device, {
      id: { $in: [...new Set(links.map((link) => link.device_ref))] },
    });
    const byId = new Map(devices.map((device) => [device.id, device]));
    const deviceIdsOf = groupBy(
      links,
      (link) => link.case_ref,
      (link) => link.device_ref,
    );
    return caseRefs.map((ref) => (deviceIdsOf.get(ref) ?? []).map((id) => byId.get(id)!));
  }

  async casesByIds(em: EntityManager, ids: readonly string[]): Promise<Case[]> {
    return em.find(Case, { id: { $in: [...ids] } });
  }

  // Writing

  /**
   * Runs one operator change in a transaction. A refused change is rolled back and then audited on
   * its own, so the trail shows attempts as well as changes. `number` names the case in that record
   * (null for a case being opened).
   */
  private async change<T>(
    em: EntityManager,
    number: number | null,
    actor: string,
    operation: string,
    work: (tx: Tx) => Promise<T>,
  ): Promise<T> {
    try {
      return await this.transactions.run(em, work);
    } catch (caught) {
      // The index is the last word when two reopenings race past refuseSecondOpen.
      const error =
        caught instanceof UniqueConstraintViolationException
          ? new ConflictError('another case is already open for this device and source', 'case-already-open')
          : caught;
      if (error instanceof DomainError) {
        await this.transactions.run(em, (tx) =>
          this.audit.record(tx, {
            actor,
            action: 'case.refused',
            subject: number === null ? 'case:new' : `case:${number}`,
            details: {
              operation,
              reason: error.reason,
              message: error.message,
              ...(error instanceof InvalidTransitionError ? { from: error.from, to: error.to } : {}),
            },
          }),
        );
      }
      throw error;
    }
  }

  /** Locks the case row: its writers queue, so none of them works on a status that is changing. */
  private async locked(tx: Tx, number: number): Promise<Case> {
    const record = await tx.em.findOne(
      Case,
      { number },
      { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
    );
    if (!record) throw new CaseNotFoundError(number);
    return record;
  }

  /**
   * Inserts a case with its links and OPENED entry; returns null when a deduplicated case already
   * exists for the device and source (the insert waited for that transaction and was skipped).
   */
  private async insertCase(tx: Tx, input: OpenCaseInput): Promise<Case | null> {
    const now = this.clock.now();
    const rows = await tx.em.getConnection().execute<Record<string, unknown>[]>(
      `insert into "case_record"
         ("id", "title", "severity", "status", "source", "device_ref", "evidence", "opened_at", "updated_at")
       values (?, ?, ?, 'OPEN', ?, ?, ?::jsonb, ?, ?)
       on conflict ("device_ref", "source") where ${DEDUPLICATED_PREDICATE} do nothing
       returning *`,
      [
        randomUUID(),
        input.title,
        input.severity,
        input.source,
        input.deviceRef,
        JSON.stringify(input.evidence),
        now,
        now,
      ],
      'all',
      tx.em.getTransactionContext(),
    );
    const [row] = rows;
    if (!row) return null;
    const record = tx.em.map(Case, row);
    const deviceRefs = [...new Set([input.deviceRef, ...(input.linkedDeviceRefs ?? [])])];
    for (const ref of deviceRefs) if (ref !== null) this.link(tx, record, ref, input.actor);
    const opened = this.event(record, 'OPENED', input.actor, input.title, {
      source: input.source,
      severity: input.severity,
      evidence: input.evidence,
    });
    await this.publish(tx, record, [opened]);
    return record;
  }

  private async appendEvidence(tx: Tx, record: Case, input: OpenCaseInput): Promise<void> {
    const events = [
      this.event(record, 'EVIDENCE', input.actor, input.title, {
        severity: input.severity,
        evidence: input.evidence,
      }),
    ];
    const linked = new Set(
      (await tx.em.find(CaseDevice, { caseRef: record.id })).map((link) => link.deviceRef),
    );
    for (const ref of input.linkedDeviceRefs ?? []) {
      if (linked.has(ref)) continue;
      linked.add(ref);
      this.link(tx, record, ref, input.actor);
    }
    const reopened = record.status === 'RESOLVED';
    if (reopened)
      events.push(this.moveTo(record, 'INVESTIGATING', 'new evidence while resolved', input.actor));
    await this.publish(tx, record, events);
    if (reopened) {
      await this.audit.record(tx, {
        actor: input.actor,
        action: 'case.status-changed',
        subject: `case:${record.number}`,
        details: { from: 'RESOLVED', to: 'INVESTIGATING', reason: 'new evidence while resolved' },
      });
    }
  }

  /** Reopening must not make a second open case for the device and source (the index would refuse). */
  private async refuseSecondOpen(tx: Tx, record: Case): Promise<void> {
    if (record.deviceRef === null || !isDeduplicated(record.source)) return;
    const other = await tx.em.findOne(Case, {
      deviceRef: record.deviceRef,
      source: record.source,
      status: { $in: [...DEDUPLICATED_STATUSES] },
      id: { $ne: record.id },
    });
    if (other) {
      throw new ConflictError(
        `case ${other.number} is already open for this device and source; add to it instead`,
        'case-already-open',
      );
    }
  }

  private moveTo(record: Case, status: CaseStatus, reason: string | null, actor: string): CaseEvent {
    const from = record.status;
    record.status = status;
    record.closedAt = status === 'CLOSED' ? this.clock.now() : null;
    return this.event(record, 'STATUS_CHANGED', actor, reason, { from, to: status });
  }

  private assignTo(record: Case, assignee: string | null, actor: string): CaseEvent {
    const from = record.assignee;
    record.assignee = assignee;
    return this.event(record, 'ASSIGNED', actor, null, { from, to: assignee });
  }

  private link(tx: Tx, record: Case, deviceRef: string, actor: string): void {
    tx.em.persist(
      Object.assign(new CaseDevice(), {
        caseRef: record.id,
        deviceRef,
        linkedAt: this.clock.now(),
        linkedBy: actor,
      }),
    );
  }

  private event(
    record: Case,
    kind: CaseEventKind,
    actor: string,
    body: string | null,
    payload: Record<string, unknown> = {},
  ): CaseEvent {
    const at = this.clock.now();
    record.updatedAt = at;
    return Object.assign(new CaseEvent(), { caseRef: record.id, kind, actor, at, body, payload });
  }

  /** Writes the entries and announces each after commit, with what subscribers filter on. */
  private async publish(tx: Tx, record: Case, events: CaseEvent[]): Promise<void> {
    for (const event of events) tx.em.persist(event);
    await tx.em.flush();
    const deviceIds = await this.linkedDeviceIds(tx, record.id);
    const { number, status, severity, source } = record;
    for (const event of events) {
      tx.emit('case.event-recorded', () => ({
        seq: event.seq,
        caseRef: record.id,
        caseNumber: number,
        kind: event.kind,
        actor: event.actor,
        at: event.at.toISOString(),
        body: event.body,
        payload: event.payload,
        caseStatus: status,
        severity,
        source,
        deviceIds,
      }));
    }
  }

  private async linkedDeviceIds(tx: Tx, caseRef: string): Promise<string[]> {
    const rows = await tx.em.getConnection().execute<{ device_id: string }[]>(
      `select d."device_id" from "case_device" l join "device" d on d."id" = l."device_ref"
        where l."case_ref" = ? order by d."device_id"`,
      [caseRef],
      'all',
      tx.em.getTransactionContext(),
    );
    return rows.map((row) => row.device_id);
  }

  private async devicesByIds(em: EntityManager, deviceIds: readonly string[]): Promise<Device[]> {
    const unique = [...new Set(deviceIds)];
    const devices = await em.find(Device, { deviceId: { $in: unique } });
    const byId = new Map(devices.map((device) => [device.deviceId, device]));
    return unique.map((deviceId) => {
      const device = byId.get(deviceId);
      if (!device) throw new DeviceNotFoundError(deviceId);
      return device;
    });
  }

  private async listWhere(em: EntityManager, filter: CaseListFilter): Promise<FilterQuery<Case>> {
    const where: Record<string, unknown> = {};
    if (filter.status?.length) where.status = { $in: [...filter.status] };
    if (filter.source?.length) where.source = { $in: [...filter.source] };
    if (filter.severity?.length) where.severity = { $in: [...filter.severity] };
    if (filter.assignee !== undefined) where.assignee = filter.assignee;
    if (filter.deviceId !== undefined) {
      const rows = await em
        .getConnection()
        .execute<{ case_ref: string }[]>(
          `select l."case_ref" from "case_device" l join "device" d on d."id" = l."device_ref" where d."device_id" = ?`,
          [filter.deviceId],
        );
      where.id = { $in: rows.map((row) => row.case_ref) };
    }
    return where;
  }
}

function groupBy<T, V>(
  items: readonly T[],
  key: (item: T) => string,
  value: (item: T) => V,
): Map<string, V[]> {
  const groups = new Map<string, V[]>();
  for (const item of items) {
    const group = groups.get(key(item));
    if (group) group.push(value(item));
    else groups.set(key(item), [value(item)]);
  }
  return groups;
}
