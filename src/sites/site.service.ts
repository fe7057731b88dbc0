import { LockMode, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { plainRowsWhereIn } from '../db/plain-rows.js';
import type { Device } from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import { ConflictError, ForbiddenError, ValidationError } from '../shared/errors.js';
import { DEVICE_ID_PATTERN } from '../shared/identifiers.js';
import type { TransactionRunner } from '../shared/transaction.js';
import { Site, type HeartbeatChannel } from './site.entity.js';
import { SiteNotFoundError } from './site.errors.js';

/** From heartbeat age: LIVE up to the stale threshold, STALE up to the down threshold, then DOWN. */
export const SITE_LIVENESS = ['LIVE', 'STALE', 'DOWN'] as const;
export type SiteLiveness = (typeof SITE_LIVENESS)[number];

/**
 * Why an offline device is silent, as far as the service can tell: its site controller went quiet
 * too (STALE or DOWN) no later than the device did, the device alone stopped, or it never spoke.
 */
export type OfflineCause = 'SITE_DOWN' | 'SITE_STALE' | 'DEVICE_SILENT' | 'NEVER_SEEN';

export interface LivenessThresholds {
  siteStaleAfterMs: number;
  siteDownAfterMs: number;
  deviceOnlineWindowMs: number;
}

export interface SiteInput {
  id: string;
  name: string;
  controllerId?: string | null | undefined;
}

export interface SitePatch {
  name?: string | null | undefined;
  /** null removes the controller; undefined leaves it. */
  controllerId?: string | null | undefined;
}

/** Who sent a heartbeat: the broker already tied an MQTT sender to the site; REST shows its token. */
export type HeartbeatSender =
  { channel: 'mqtt' } | { channel: 'rest'; actor: string; role: string; siteId: string | null };

export interface KeysetPage {
  after?: string | undefined;
  before?: string | undefined;
  limit: number;
  reversed: boolean;
}

/**
 * Sites, their controllers' heartbeats and every liveness rule: site LIVE/STALE/DOWN, device
 * online/offline and the cause shown for an offline device are all decided here, on the clock.
 */
/**
 * `SiteService.isOnline` as SQL over a last-seen column (`online` true) or its negation (false), for
 * listings and counts; its one `?` takes `onlineCutoff()`.
 */
export function onlineSql(lastSeenColumn: string, online: boolean): string {
  return online ? `${lastSeenColumn} >= ?` : `(${lastSeenColumn} is null or ${lastSeenColumn} < ?)`;
}

export class SiteService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
    private readonly thresholds: LivenessThresholds,
  ) {}

  async create(em: EntityManager, input: SiteInput, actor: string): Promise<Site> {
    const id = validSiteId(input.id);
    const name = validName(input.name);
    const controllerId = validControllerId(input.controllerId ?? null);
    try {
      return await this.transactions.run(em, async (tx) => {
        if (await tx.em.findOne(Site, { id }, { fields: ['id'] })) {
          throw new ConflictError(`site ${id} already exists`, 'site-exists');
        }
        const now = this.clock.now();
        const site = Object.assign(new Site(), { id, name, controllerId, createdAt: now, updatedAt: now });
        tx.em.persist(site);
        await tx.em.flush();
        await this.audit.record(tx, {
          actor,
          action: 'site.created',
          subject: `site:${id}`,
          details: { name, controllerId },
        });
        tx.emit('site.changed', { siteId: id, change: 'created' });
        return site;
      });
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) {
        throw new ConflictError(`site ${id} already exists`, 'site-exists');
      }
      throw error;
    }
  }

  async update(em: EntityManager, id: string, patch: SitePatch, actor: string): Promise<Site> {
    const name = patch.name == null ? undefined : validName(patch.name);
    const controllerId = patch.controllerId === undefined ? undefined : validControllerId(patch.controllerId);
    return this.transactions.run(em, async (tx) => {
      const site = await tx.em.findOne(Site, { id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!site) throw new SiteNotFoundError(id);
      const changes: Record<string, { from: unknown; to: unknown }> = {};
      if (name !== undefined && name !== site.name) changes.name = { from: site.name, to: name };
      if (controllerId !== undefined && controllerId !== site.controllerId) {
        // Changing the controller moves who may speak for the site on MQTT: audited with both ids.
        changes.controllerId = { from: site.controllerId, to: controllerId };
      }
      if (Object.keys(changes).length === 0) return site;
      if (name !== undefined) site.name = name;
      if (controllerId !== undefined) site.controllerId = controllerId;
      site.updatedAt = this.clock.now();
      await tx.em.flush();
      await this.audit.record(tx, { actor, action: 'site.updated', subject: `site:${id}`, details: changes });
      tx.emit('site.changed', { siteId: id, change: 'updated' });
      return site;
    });
  }

  /**
   * Records that the site's controller is alive, at the service's time. Over REST only a site token
   * bound to this very site may do it; a refusal is audited (a controller speaking for another site
   * is either misconfigured or compromised). Returns the time recorded.
   */
  async recordHeartbeat(em: EntityManager, siteId: string, sender: HeartbeatSender): Promise<Date> {
    if (sender.channel === 'rest' && (sender.role !== 'site' || sender.siteId !== siteId)) {
      const reason = sender.role !== 'site' ? 'site-token-required' : 'site-token-mismatch';
      await this.transactions.run(em, (tx) =>
        this.audit.record(tx, {
          actor: sender.actor,
          action: 'site.heartbeat-refused',
          subject: `site:${siteId}`,
          details: { reason, tokenSite: sender.siteId },
        }),
      );
      // Stops one controller (or a leaked token) from keeping another site looking alive.
      throw new ForbiddenError(
        sender.role !== 'site'
          ? 'heartbeats need a site token'
          : `this token may only send heartbeats for site ${sender.siteId ?? '(none)'}`,
        reason,
      );
    }
    const now = this.clock.now();
    return this.transactions.run(em, async (tx) => {
      // One statement: the new time in, the previous one out (the self-join reads the old row).
      const [row] = await tx.em.getConnection().execute<{ previous: Date | null }[]>(
        `update site s set last_heartbeat_at = ?, last_heartbeat_channel = ?
           from site old where old.id = s.id and s.id = ?
         returning old.last_heartbeat_at as previous`,
        [now, sender.channel satisfies HeartbeatChannel, siteId],
        'all',
        tx.em.getTransactionContext(),
      );
      if (!row) throw new SiteNotFoundError(siteId);
      const before = this.livenessAt(row.previous === null ? null : new Date(row.previous), now);
      if (before !== 'LIVE') tx.emit('site.changed', { siteId, change: 'live' });
      return now;
    });
  }

  /** Whether `deviceId` is the controller of `siteId`: the broker's rule for MQTT heartbeats. */
  async isController(em: EntityManager, deviceId: string, siteId: string): Promise<boolean> {
    return (await em.count(Site, { id: siteId, controllerId: deviceId })) > 0;
  }

  async get(em: EntityManager, id: string): Promise<Site> {
    const site = await em.findOne(Site, { id });
    if (!site) throw new SiteNotFoundError(id);
    return site;
  }

  /** Sites by id, as plain rows for reading; unknown ids are left out. */
  async byIds(em: EntityManager, ids: readonly string[]): Promise<Site[]> {
    return plainRowsWhereIn(em, Site, 'id', ids);
  }

  /** Sites in id order, one keyset page at a time. */
  async list(em: EntityManager, page: KeysetPage): Promise<Site[]> {
    const bounds: Array<Record<string, unknown>> = [];
    if (page.after !== undefined) bounds.push({ id: { $gt: page.after } });
    if (page.before !== undefined) bounds.push({ id: { $lt: page.before } });
    return em.find(Site, bounds.length ? { $and: bounds } : {}, {
      orderBy: { id: page.reversed ? 'desc' : 'asc' },
      limit: page.limit,
    });
  }

  async count(em: EntityManager): Promise<number> {
    return em.count(Site, {});
  }

  liveness(site: Pick<Site, 'lastHeartbeatAt'>): SiteLiveness {
    return this.livenessAt(site.lastHeartbeatAt, this.clock.now());
  }

  /** Devices heard from at or after this time are online. */
  onlineCutoff(): Date {
    return new Date(this.clock.now().getTime() - this.thresholds.deviceOnlineWindowMs);
  }

  isOnline(device: Pick<Device, 'lastSeenAt'>): boolean {
    return device.lastSeenAt !== null && device.lastSeenAt >= this.onlineCutoff();
  }

  /**
   * Null while the device is online. The site is blamed only if it is STALE or DOWN and fell silent
   * before the device counted as offline: a controller that kept beating long after the device went
   * quiet does not explain the device's silence.
   */
  offlineCause(
    device: Pick<Device, 'lastSeenAt'>,
    site: Pick<Site, 'lastHeartbeatAt'> | null,
  ): OfflineCause | null {
    if (this.isOnline(device)) return null;
    if (site) {
      const liveness = this.liveness(site);
      const quietBeforeDevice =
        site.lastHeartbeatAt === null ||
        device.lastSeenAt === null ||
        site.lastHeartbeatAt.getTime() < device.lastSeenAt.getTime() + this.thresholds.deviceOnlineWindowMs;
      if (liveness !== 'LIVE' && quietBeforeDevice) return liveness === 'DOWN' ? 'SITE_DOWN' : 'SITE_STALE';
    }
    return device.lastSeenAt === null ? 'NEVER_SEEN' : 'DEVICE_SILENT';
  }

  /** A site that never sent a heartbeat has no evidence of life: DOWN. */
  private livenessAt(lastHeartbeatAt: Date | null, now: Date): SiteLiveness {
    if (lastHeartbeatAt === null) return 'DOWN';
    const age = now.getTime() - lastHeartbeatAt.getTime();
    if (age <= this.thresholds.siteStaleAfterMs) return 'LIVE';
    return age <= this.thresholds.siteDownAfterMs ? 'STALE' : 'DOWN';
  }
}

function validSiteId(id: string): string {
  // The id becomes an MQTT topic level: no `/`, `+` or `#` that would change what a filter matches.
  if (!DEVICE_ID_PATTERN.test(id)) {
    throw new ValidationError('id', 'site id: 1-64 of A-Z a-z 0-9 . _ : - , starting with a letter or digit');
  }
  return id;
}

function validName(name: string): string {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 200) throw new ValidationError('name', 'name must be 1-200 characters');
  return trimmed;
}

function validControllerId(controllerId: string | null): string | null {
  if (controllerId === null) return null;
  if (!DEVICE_ID_PATTERN.test(controllerId)) {
    throw new ValidationError('controllerId', 'controllerId must be a device id (the certificate CN)');
  }
  return controllerId;
}
