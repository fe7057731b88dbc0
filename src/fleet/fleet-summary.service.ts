import type { EntityManager } from '@mikro-orm/postgresql';
import {
  ATTESTATION_STATUSES,
  DEVICE_TYPES,
  RISK_BANDS,
  type AttestationStatus,
  type DeviceType,
  type RiskBand,
} from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import { onlineSql, type SiteLiveness, type SiteService } from '../sites/site.service.js';

/** The runbook's "pending for too long": registered more than a day ago and still PENDING. */
export const PENDING_ALERT_MS = 24 * 60 * 60 * 1000;

export interface SiteCount {
  /** Null: devices without a site. */
  siteId: string | null;
  /** False for a site id devices carry that no site definition has. */
  defined: boolean;
  liveness: SiteLiveness | null;
  devices: number;
  offline: number;
}

/** Counts over the fleet (rejected devices left out, as in listings); plain JSON, the same in every channel. */
export interface FleetSummary {
  computedAt: string;
  devices: number;
  /** Approved devices not heard from within the online window (the others are not expected to speak). */
  offline: number;
  pendingOver24h: number;
  byAttestationStatus: Array<{ status: AttestationStatus; count: number }>;
  byRiskBand: Array<{ band: RiskBand; count: number }>;
  byType: Array<{ type: DeviceType; count: number }>;
  /** Every defined site (with or without devices), then undefined site ids, then devices without one. */
  bySite: SiteCount[];
}

interface GroupRow {
  g_status: number;
  g_band: number;
  g_type: number;
  g_site: number;
  attestation_status: string | null;
  risk_band: string | null;
  type: string | null;
  site_id: string | null;
  devices: number;
  offline: number;
  pending_long: number;
}

/**
 * The fleet summary in two statements whatever the fleet's size: one aggregate over the device
 * table (grouping sets per dimension, plus the total) and the site list for liveness. Callers that
 * ask while a computation they may share is running get that one.
 */
export class FleetSummaryService {
  #inFlight: { startedAt: number; summary: Promise<FleetSummary> } | null = null;

  constructor(
    private readonly sites: SiteService,
    private readonly clock: Clock,
  ) {}

  /**
   * The summary as of a computation that started after `notBefore` (a `performance.now()` time, for
   * example of the last change the caller heard of), so nothing committed before then is missing.
   */
  current(em: EntityManager, notBefore = -Infinity): Promise<FleetSummary> {
    if (this.#inFlight && this.#inFlight.startedAt > notBefore) return this.#inFlight.summary;
    const startedAt = performance.now();
    const summary = this.compute(em).finally(() => {
      if (this.#inFlight?.summary === summary) this.#inFlight = null;
    });
    this.#inFlight = { startedAt, summary };
    return summary;
  }

  private async compute(em: EntityManager): Promise<FleetSummary> {
    const now = this.clock.now();
    const connection = em.getConnection();
    const rows = await connection.execute<GroupRow[]>(
      `select grouping(attestation_status) as g_status, grouping(risk_band) as g_band,
              grouping(type) as g_type, grouping(site_id) as g_site,
              attestation_status, risk_band, type, site_id,
              count(*)::int as devices,
              (count(*) filter (where enrollment_state = 'APPROVED'
                                  and ${onlineSql('last_seen_at', false)}))::int as offline,
              (count(*) filter (where attestation_status = 'PENDING' and registered_at < ?))::int as pending_long
         from device
        where enrollment_state <> 'REJECTED'
        group by grouping sets ((attestation_status), (risk_band), (type), (site_id), ())`,
      [this.sites.onlineCutoff(), new Date(now.getTime() - PENDING_ALERT_MS)],
    );
    const defined = await connection.execute<{ id: string; last_heartbeat_at: Date | null }[]>(
      `select id, last_heartbeat_at from site order by id`,
    );

    const total = rows.find((row) => row.g_status && row.g_band && row.g_type && row.g_site);
    const countsOf = (pick: (row: GroupRow) => string | null, grouped: (row: GroupRow) => number) =>
      new Map(rows.filter((row) => !grouped(row)).map((row) => [pick(row), row]));
    const byStatus = countsOf(
      (row) => row.attestation_status,
      (row) => row.g_status,
    );
    const byBand = countsOf(
      (row) => row.risk_band,
      (row) => row.g_band,
    );
    const byType = countsOf(
      (row) => row.type,
      (row) => row.g_type,
    );
    const bySite = countsOf(
      (row) => row.site_id,
      (row) => row.g_site,
    );

    const sites: SiteCount[] = defined.map((site) => ({
      siteId: site.id,
      defined: true,
      liveness: this.sites.liveness({
        lastHeartbeatAt: site.last_heartbeat_at === null ? null : new Date(site.last_heartbeat_at),
      }),
      devices: bySite.get(site.id)?.devices ?? 0,
      offline: bySite.get(site.id)?.offline ?? 0,
    }));
    const definedIds = new Set(defined.map((site) => site.id));
    const undefinedIds = [...bySite.keys()].filter((id): id is string => id !== null && !definedIds.has(id));
    for (const siteId of undefinedIds.sort()) {
      const row = bySite.get(siteId)!;
      sites.push({ siteId, defined: false, liveness: null, devices: row.devices, offline: row.offline });
    }
    const noSite = bySite.get(null);
    if (noSite) {
      sites.push({
        siteId: null,
        defined: false,
        liveness: null,
        devices: noSite.devices,
        offline: noSite.offline,
      });
    }

    return {
      computedAt: now.toISOString(),
      devices: total?.devices ?? 0,
      offline: total?.offline ?? 0,
      pendingOver24h: total?.pending_long ?? 0,
      byAttestationStatus: ATTESTATION_STATUSES.map((status) => ({
        status,
        count: byStatus.get(status)?.devices ?? 0,
      })),
      byRiskBand: RISK_BANDS.map((band) => ({ band, count: byBand.get(band)?.devices ?? 0 })),
      byType: DEVICE_TYPES.map((type) => ({ type, count: byType.get(type)?.devices ?? 0 })),
      bySite: sites,
    };
  }
}

/** Two summaries say the same about the fleet (whenever each was computed). */
export function sameSummary(a: FleetSummary, b: FleetSummary): boolean {
  return JSON.stringify({ ...a, computedAt: '' }) === JSON.stringify({ ...b, computedAt: '' });
}
