import { randomUUID } from 'node:crypto';
import { LockMode, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { plainRows, plainRowsWhereIn, selectList } from '../db/plain-rows.js';
import type { Clock } from '../shared/clock.js';
import { onlineSql } from '../sites/site.service.js';
import { ConflictError, DeviceNotFoundError, ValidationError } from '../shared/errors.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';
import {
  Device,
  type AttestationStatus,
  type Criticality,
  type DeviceType,
  type EnrollmentState,
  type RiskBand,
} from './device.entity.js';
import { parseRegistration, type DeviceRegistrationInput } from './device-input.js';
import { MAX_IMPORT_ROWS } from './inventory-file.js';

export type RegistrationOutcome = 'created' | 'updated' | 'unchanged' | 're-registered';

export interface ImportRowResult {
  row: number;
  deviceId: string | null;
  outcome: RegistrationOutcome | 'error';
  error?: { field: string; message: string };
}

/** What a fleet listing may be narrowed by; every given field narrows it further. */
export interface DeviceListFilter {
  attestationStatus?: readonly AttestationStatus[] | undefined;
  type?: readonly DeviceType[] | undefined;
  siteId?: string | undefined;
  criticality?: Criticality | undefined;
  deviceIdPrefix?: string | undefined;
  enrollmentState?: readonly EnrollmentState[] | undefined;
  includeRejected?: boolean | undefined;
  riskBand?: readonly RiskBand[] | undefined;
  /** Strictly above this score. */
  riskAbove?: number | undefined;
  isolated?: boolean | undefined;
  /** PENDING and registered before this time (the adapter turns "pending longer than" into it). */
  pendingSince?: Date | undefined;
  /** Heard from at or after this time (true) or not (false); the cutoff is the liveness window. */
  online?: { value: boolean; cutoff: Date } | undefined;
}

export const DEVICE_ORDER_FIELDS = ['DEVICE_ID', 'RISK_SCORE', 'LAST_ATTESTATION', 'LAST_SEEN'] as const;
export type DeviceOrderField = (typeof DEVICE_ORDER_FIELDS)[number];

/**
 * The property behind each order (read for cursors) and its column (sorted on); device id breaks
 * ties, in the same direction, so keysets are total.
 */
const ORDER_KEY = {
  DEVICE_ID: null,
  RISK_SCORE: { property: 'riskScore', column: '"risk_score"' },
  LAST_ATTESTATION: { property: 'lastAttestationAt', column: '"last_attestation_at"' },
  LAST_SEEN: { property: 'lastSeenAt', column: '"last_seen_at"' },
} as const satisfies Record<DeviceOrderField, { property: keyof Device; column: string } | null>;

export interface DeviceOrder {
  field: DeviceOrderField;
  ascending: boolean;
}

/** Where a page starts: the order key of the last row seen and its device id. */
export interface DeviceKey {
  value: number | string | null;
  deviceId: string;
}

/** A keyset page: strictly after and/or before the given keys in the given order, at most `limit` rows. */
export interface DeviceListPage {
  order: DeviceOrder;
  after?: DeviceKey | undefined;
  before?: DeviceKey | undefined;
  limit: number;
  /** Read the order backwards (Relay's `last`/`before`). */
  inverted: boolean;
}

/** Rows committed per transaction in an import: large enough to be fast, small enough to not hold locks long. */
const IMPORT_BATCH = 500;

/**
 * The inventory of expected devices, kept by facilities. Registering an id that exists updates its
 * attributes; registering a revoked or rejected device again is what allows it to re-enroll.
 */
export class InventoryService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  async register(
    em: EntityManager,
    input: unknown,
    actor: string,
  ): Promise<{ device: Device; outcome: RegistrationOutcome }> {
    const row = parseRegistration(input);
    try {
      return await this.transactions.run(em, async (tx) => {
        const outcome = await this.apply(tx, row, actor);
        return { device: outcome.device, outcome: outcome.outcome };
      });
    } catch (error) {
      // Two first registrations of one device at the same moment: one commits, the other is told to retry.
      if (error instanceof UniqueConstraintViolationException) {
        throw new ConflictError(
          `device ${row.device_id} was registered or changed at the same time; retry`,
          'concurrent-registration',
        );
      }
      throw error;
    }
  }

  /**
   * A vendor list: each batch commits on its own, rows that fail validation or conflict are reported
   * and skipped, and importing the same list again changes nothing (every row `unchanged`).
   */
  async import(
    em: EntityManager,
    rows: readonly unknown[],
    actor: string,
    onProgress?: (done: number, total: number) => void,
  ): Promise<ImportRowResult[]> {
    // The same bound whatever the transport (file or structured list): larger vendor lists are split.
    if (rows.length > MAX_IMPORT_ROWS) {
      throw new ValidationError('rows', `at most ${MAX_IMPORT_ROWS} rows per import (got ${rows.length})`);
    }
    const results: ImportRowResult[] = [];
    for (let start = 0; start < rows.length; start += IMPORT_BATCH) {
      const batch = rows.slice(start, start + IMPORT_BATCH);
      const batchResults = await this.transactions.run(em.fork(), async (tx) => {
        await lockInIdOrder(tx.em, batch);
        const out: ImportRowResult[] = [];
        const counts: Record<string, number> = {};
        for (const [offset, raw] of batch.entries()) {
          const rowNumber = start + offset + 1;
          const deviceId =
            typeof (raw as { device_id?: unknown })?.device_id === 'string'
              ? (raw as { device_id: string }).device_id
              : null;
          try {
            const row = parseRegistration(raw);
            // A savepoint per row: one conflicting row must not abort the batch's transaction.
            const { outcome } = await tx.em.transactional((inner) =>
              this.apply({ em: inner, emit: (topic, payload) => tx.emit(topic, payload) }, row, actor, false),
            );
            out.push({ row: rowNumber, deviceId: row.device_id, outcome });
            counts[outcome] = (counts[outcome] ?? 0) + 1;
          } catch (error) {
            if (!(error instanceof ValidationError || error instanceof ConflictError)) throw error;
            out.push({
              row: rowNumber,
              deviceId,
              outcome: 'error',
              error: {
                field: error instanceof ValidationError ? error.field : 'device_id',
                message: error.message,
              },
            });
            counts.error = (counts.error ?? 0) + 1;
          }
        }
        await this.audit.record(tx, {
          actor,
          action: 'inventory.imported',
          subject: 'inventory',
          details: { firstRow: start + 1, rows: batch.length, ...counts },
        });
        return out;
      });
      results.push(...batchResults);
      onProgress?.(results.length, rows.length);
    }
    return results;
  }

  async get(em: EntityManager, deviceId: string): Promise<Device> {
    const device = await em.findOne(Device, { deviceId });
    if (!device) throw new DeviceNotFoundError(deviceId);
    return device;
  }

  /** Devices by device id (the business key), as plain rows for reading; unknown ids are left out. */
  async byDeviceIds(em: EntityManager, deviceIds: readonly string[]): Promise<Device[]> {
    return plainRowsWhereIn(em, Device, 'deviceId', deviceIds);
  }

  /**
   * The fleet one keyset page at a time, in the given order (stable while devices are added), as
   * plain rows for reading.
   */
  async list(em: EntityManager, filter: DeviceListFilter, page: DeviceListPage): Promise<Device[]> {
    const { field, ascending } = page.order;
    const column = ORDER_KEY[field]?.column ?? null;
    const where = listWhere(filter);
    if (page.after) where.push(beyond(column, page.after, ascending));
    if (page.before) where.push(beyond(column, page.before, !ascending));
    const forward = ascending !== page.inverted;
    // Nulls (never seen, never attested) sort as the oldest: first ascending, last descending.
    const orderBy = [
      ...(column ? [`d.${column} ${forward ? 'asc nulls first' : 'desc nulls last'}`] : []),
      `d."device_id" ${forward ? 'asc' : 'desc'}`,
    ];
    return plainRows(
      em,
      Device,
      `select ${selectList(em, Device, 'd')} from "device" d ${whereClause(where)}
        order by ${orderBy.join(', ')} limit ?`,
      [...where.flatMap((condition) => condition.params), page.limit],
    );
  }

  /** The order key of a device, for its cursor. */
  orderKey(device: Device, field: DeviceOrderField): DeviceKey {
    const key = ORDER_KEY[field];
    const value = key ? device[key.property] : null;
    return { value: value instanceof Date ? value.toISOString() : value, deviceId: device.deviceId };
  }

  async count(em: EntityManager, filter: DeviceListFilter): Promise<number> {
    const where = listWhere(filter);
    const [row] = await em.execute<Array<{ count: number }>>(
      `select count(*)::int as "count" from "device" d ${whereClause(where)}`,
      where.flatMap((condition) => condition.params),
    );
    return row?.count ?? 0;
  }

  private async apply(
    tx: Tx,
    row: DeviceRegistrationInput,
    actor: string,
    auditEach = true,
  ): Promise<{ device: Device; outcome: RegistrationOutcome }> {
    const now = this.clock.now();
    // Locked until the commit: the scheduler skips the device meanwhile and an attestation result waits,
    // so neither can make this change fail.
    const existing = await tx.em.findOne(
      Device,
      { deviceId: row.device_id },
      { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
    );
    const attributes = {
      type: row.device_type,
      model: row.model ?? null,
      siteId: row.site ?? null,
      criticality: row.criticality ?? 'standard',
      expectedCdiCommitment: row.expected_cdi_commitment ?? null,
      expectedSpkiSha256: row.expected_spki_sha256 ?? null,
      goldenFirmwareHash: row.golden_firmware_hash ?? null,
    } as const;

    let device: Device;
    let outcome: RegistrationOutcome;
    if (!existing) {
      device = Object.assign(new Device(), attributes, {
        id: randomUUID(),
        deviceId: row.device_id,
        registeredAt: now,
        updatedAt: now,
      });
      tx.em.persist(device);
      outcome = 'created';
    } else if (existing.enrollmentState === 'REVOKED' || existing.enrollmentState === 'REJECTED') {
      // Facilities vouch for the device again: it may request a fresh token and enroll anew.
      device = Object.assign(existing, attributes, {
        enrollmentState: 'REGISTERED',
        attestationStatus: 'PENDING',
        cdiCommitment: null,
        nextChallengeAt: null,
        registeredAt: now,
        updatedAt: now,
      });
      outcome = 're-registered';
    } else {
      const changed = (Object.keys(attributes) as Array<keyof typeof attributes>).filter(
        (key) => existing[key] !== attributes[key],
      );
      if (changed.length === 0) return { device: existing, outcome: 'unchanged' };
      const identityFields = changed.filter(
        (key) => key === 'expectedCdiCommitment' || key === 'expectedSpkiSha256',
      );
      // Rewriting the expected identity of an enrolled device would let a different part take its place.
      if (identityFields.length > 0 && existing.enrollmentState !== 'REGISTERED') {
        throw new ConflictError(
          `device ${row.device_id} is enrolled; its expected identity cannot change (revoke and re-register it)`,
          'identity-locked',
        );
      }
      device = Object.assign(existing, attributes, { updatedAt: now });
      outcome = 'updated';
    }
    await tx.em.flush();
    if (auditEach) {
      await this.audit.record(tx, {
        actor,
        action: `device.${outcome}`,
        subject: `device:${device.deviceId}`,
        details: { type: device.type, site: device.siteId, criticality: device.criticality },
      });
    }
    return { device, outcome };
  }
}

/**
 * Locks the existing devices an import batch names, in id order as every multi-row device write takes
 * them, so the batch cannot deadlock with an attestation group that holds some of them.
 */
async function lockInIdOrder(em: EntityManager, rows: readonly unknown[]): Promise<void> {
  const deviceIds = rows
    .map((raw) => (raw as { device_id?: unknown } | null)?.device_id)
    .filter((id): id is string => typeof id === 'string');
  if (deviceIds.length === 0) return;
  await em.execute(`select id from device where device_id in (?) order by id for update`, [deviceIds]);
}

/** A condition on the device table (alias `d`) and the values of its placeholders. */
interface Condition {
  sql: string;
  params: unknown[];
}

const condition = (sql: string, ...params: unknown[]): Condition => ({ sql, params });

/** `column in (values)`; no values match no row. */
const oneOf = (column: string, values: readonly string[]): Condition =>
  values.length > 0 ? condition(`d.${column} in (?)`, [...values]) : condition('false');

const whereClause = (conditions: readonly Condition[]): string =>
  conditions.length > 0 ? `where ${conditions.map((c) => c.sql).join(' and ')}` : '';

/** The filter rules of fleet listings and their counts. */
function listWhere(filter: DeviceListFilter): Condition[] {
  const where: Condition[] = [];
  if (filter.attestationStatus) where.push(oneOf('"attestation_status"', filter.attestationStatus));
  if (filter.type) where.push(oneOf('"type"', filter.type));
  if (filter.siteId !== undefined) where.push(condition('d."site_id" = ?', filter.siteId));
  if (filter.criticality !== undefined) where.push(condition('d."criticality" = ?', filter.criticality));
  if (filter.deviceIdPrefix) {
    where.push(condition('d."device_id" like ?', `${escapeLike(filter.deviceIdPrefix)}%`));
  }
  if (filter.enrollmentState) where.push(oneOf('"enrollment_state"', filter.enrollmentState));
  if (filter.riskBand) where.push(oneOf('"risk_band"', filter.riskBand));
  if (filter.riskAbove !== undefined) where.push(condition('d."risk_score" > ?', filter.riskAbove));
  if (filter.isolated !== undefined) where.push(condition('d."isolated" = ?', filter.isolated));
  if (filter.pendingSince) {
    where.push(
      condition(`d."attestation_status" = 'PENDING' and d."registered_at" < ?`, filter.pendingSince),
    );
  }
  if (filter.online) {
    where.push(condition(onlineSql('d."last_seen_at"', filter.online.value), filter.online.cutoff));
  }
  // A rejected device never joined the fleet: listings leave it out unless asked for it by name or flag.
  // Written as the fleet-page indexes' predicate, so they serve every default listing.
  if (!filter.includeRejected && !filter.enrollmentState?.includes('REJECTED')) {
    where.push(condition(`d."enrollment_state" <> 'REJECTED'`));
  }
  return where;
}

/**
 * Rows strictly after `key` in the order (column, device id), both ascending or both descending,
 * with nulls as the smallest values. A Date column gets the key back as a Date.
 */
function beyond(column: string | null, key: DeviceKey, ascending: boolean): Condition {
  const than = ascending ? '>' : '<';
  const idAfter = `d."device_id" ${than} ?`;
  if (!column) return condition(idAfter, key.deviceId);
  const at = `d.${column}`;
  const value = typeof key.value === 'string' ? new Date(key.value) : key.value;
  if (value === null) {
    return ascending
      ? condition(`((${at} is null and ${idAfter}) or ${at} is not null)`, key.deviceId)
      : condition(`(${at} is null and ${idAfter})`, key.deviceId);
  }
  return condition(
    `(${at} ${than} ? or (${at} = ? and ${idAfter})${ascending ? '' : ` or ${at} is null`})`,
    value,
    value,
    key.deviceId,
  );
}

/** Device ids may contain `_`, a LIKE wildcard: match it literally. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (match) => `\\${match}`);
}
