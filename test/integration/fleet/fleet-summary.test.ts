import { randomBytes } from 'node:crypto';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/shared/clock.js';
import { OpensslDevice } from '../../support/attestation-device.js';
import { wsClient } from '../../support/live-feed.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

const HOUR = 60 * 60 * 1000;

let service: TestService;
let viewer: string;
let client: Client | undefined;
// Starts a day and an hour back: after the 25 h step, certificates it issues are valid in real time (TLS).
const clock = new ManualClock(new Date(Date.now() - 25 * HOUR));
const devices: OpensslDevice[] = [];

beforeAll(async () => {
  service = await startTestService({
    mqtt: 'embedded',
    clock,
    env: { FLEETPROOF_DEVICE_ONLINE_WINDOW_S: '120', FLEETPROOF_SITE_STALE_AFTER_S: '60' },
  });
  viewer = await service.token('viewer');
});

afterAll(async () => {
  await client?.dispose();
  for (const device of devices) await device.dispose();
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();
const uniqueId = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

const SUMMARY_FIELDS = `
  devices offline pendingOver24h
  byAttestationStatus { status count }
  byRiskBand { band count }
  byType { type count }
  bySite { siteId defined site { name } liveness devices offline }`;

interface Summary {
  devices: number;
  offline: number;
  pendingOver24h: number;
  byAttestationStatus: Array<{ status: string; count: number }>;
  byRiskBand: Array<{ band: string; count: number }>;
  byType: Array<{ type: string; count: number }>;
  bySite: Array<{
    siteId: string | null;
    defined: boolean;
    site: { name: string } | null;
    liveness: string | null;
    devices: number;
    offline: number;
  }>;
}

async function querySummary(): Promise<Summary> {
  const { body } = await graphql<{ fleetSummary: Summary }>(
    service.app.urls.graphql,
    viewer,
    `{ fleetSummary { ${SUMMARY_FIELDS} } }`,
  );
  expect(body.errors).toBeUndefined();
  return body.data!.fleetSummary;
}

const countsOf = <K extends string>(rows: Array<Record<K, string> & { count: number }>, key: K) =>
  Object.fromEntries(rows.filter((row) => row.count > 0).map((row) => [row[key], row.count]));

async function register(deviceId: string, type: string, site?: string): Promise<void> {
  await service.services.inventory.register(
    em(),
    { device_id: deviceId, device_type: type, ...(site ? { site } : {}) },
    'test',
  );
}

describe('fleetSummary', () => {
  it('counts by status, band, type and site, offline devices and devices pending over 24 hours', async () => {
    const alpha = uniqueId('alpha');
    const beta = uniqueId('beta');
    const ghost = uniqueId('ghost');
    const { sites, lifecycle, risk, presence } = service.services;
    await sites.create(em(), { id: alpha, name: 'Alpha plant' }, 'test');
    await sites.create(em(), { id: beta, name: 'Beta plant' }, 'test');
    await register(uniqueId('old-plc'), 'PLC', alpha);
    await register(uniqueId('old-rtu'), 'RTU', beta);
    clock.advance(25 * HOUR);
    const elevated = uniqueId('hmi');
    await register(elevated, 'HMI', alpha);
    await register(uniqueId('hmi'), 'HMI');
    await register(uniqueId('sensor'), 'SENSOR', ghost);
    const online = await OpensslDevice.enroll(service, uniqueId('plc-on'));
    const silent = await OpensslDevice.enroll(service, uniqueId('plc-off'));
    devices.push(online, silent);
    await lifecycle.approve(em(), online.deviceId, 'test');
    await lifecycle.approve(em(), silent.deviceId, 'test');
    await register(uniqueId('gateway'), 'GATEWAY');
    await risk.reportIocHit(
      em(),
      {
        deviceId: elevated,
        indicator: '198.51.100.7',
        source: 'siem',
        severity: 'HIGH',
        observedAt: clock.now(),
      },
      'test',
    );
    await sites.recordHeartbeat(em(), alpha, { channel: 'mqtt' });
    // Past the online window, only one of the approved devices speaks.
    clock.advance(121 * 1000);
    await sites.recordHeartbeat(em(), alpha, { channel: 'mqtt' });
    presence.seen(online.deviceId);
    await presence.flush(em());

    const summary = await querySummary();
    expect(summary).toMatchObject({ devices: 8, offline: 1, pendingOver24h: 2 });
    expect(countsOf(summary.byAttestationStatus, 'status')).toEqual({ PENDING: 6, VERIFIED: 2 });
    expect(summary.byAttestationStatus.map((row) => row.status)).toEqual([
      'PENDING',
      'VERIFIED',
      'FAILED',
      'REVOKED',
    ]);
    expect(countsOf(summary.byRiskBand, 'band')).toEqual({ NORMAL: 7, ELEVATED: 1 });
    expect(countsOf(summary.byType, 'type')).toEqual({ PLC: 3, RTU: 1, HMI: 2, SENSOR: 1, GATEWAY: 1 });
    expect(summary.bySite).toEqual([
      {
        siteId: alpha,
        defined: true,
        site: { name: 'Alpha plant' },
        liveness: 'LIVE',
        devices: 2,
        offline: 0,
      },
      { siteId: beta, defined: true, site: { name: 'Beta plant' }, liveness: 'DOWN', devices: 1, offline: 0 },
      { siteId: ghost, defined: false, site: null, liveness: null, devices: 1, offline: 0 },
      { siteId: null, defined: false, site: null, liveness: null, devices: 4, offline: 1 },
    ]);

    // /metrics carries the same numbers.
    const metrics = await (await fetch(`${service.app.urls.http}/metrics`)).text();
    const gauge = (line: string) =>
      Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(gauge('fleetproof_fleet_offline_devices')).toBe(1);
    expect(gauge('fleetproof_fleet_pending_over_24h_devices')).toBe(2);
    expect(gauge('fleetproof_fleet_devices_by_status{status="VERIFIED"}')).toBe(2);
    expect(gauge('fleetproof_fleet_devices_by_risk_band{band="ELEVATED"}')).toBe(1);
    expect(gauge('fleetproof_fleet_devices_by_type{type="PLC"}')).toBe(3);
    expect(gauge(`fleetproof_fleet_devices_by_site{site="${alpha}",state="all"}`)).toBe(2);
    expect(gauge('fleetproof_fleet_devices_by_site{site="",state="offline"}')).toBe(1);
    expect(gauge(`fleetproof_site_liveness{site="${beta}",liveness="DOWN"}`)).toBe(1);
    expect(gauge(`fleetproof_site_liveness{site="${beta}",liveness="LIVE"}`)).toBe(0);
  });
});

describe('fleetSummary subscription', () => {
  it('sends at most one message a second under a burst of 1,000 changes, and its last message is exact', async () => {
    const ids = Array.from({ length: 1_000 }, (_, index) => `burst-${String(index).padStart(4, '0')}`);
    const results = await service.services.inventory.import(
      em(),
      ids.map((id) => ({ device_id: id, device_type: 'SENSOR', site: 'burst-site' })),
      'test',
    );
    expect(results.every((row) => row.outcome === 'created')).toBe(true);

    client = wsClient(service.app.urls.graphql, viewer);
    const received: Array<{ at: number; summary: Summary }> = [];
    const subscription = client.iterate<{ fleetSummary: Summary }>({
      query: `subscription { fleetSummary { ${SUMMARY_FIELDS} } }`,
    });
    const reading = (async () => {
      for await (const message of subscription) {
        expect(message.errors).toBeUndefined();
        received.push({ at: performance.now(), summary: message.data!.fleetSummary });
      }
    })();
    while (received.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const before = await querySummary();
    expect(received[0]!.summary).toEqual(before);
    const elevatedBefore = countsOf(before.byRiskBand, 'band').ELEVATED ?? 0;

    // 1,000 risk band changes (NORMAL -> ELEVATED), each committed and published on its own.
    const started = performance.now();
    const queue = [...ids];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
          await service.services.risk.reportIocHit(
            em(),
            {
              deviceId: id,
              indicator: `ioc-${id}`,
              source: 'siem',
              severity: 'HIGH',
              observedAt: clock.now(),
            },
            'test',
          );
        }
      }),
    );
    const burstMs = performance.now() - started;
    const exact = await querySummary();
    expect(countsOf(exact.byRiskBand, 'band').ELEVATED).toBe(elevatedBefore + 1_000);
    // The trailing message comes at most a second (plus one summary's time) after the last change.
    const deadline = performance.now() + 3_000;
    while (
      performance.now() < deadline &&
      JSON.stringify(received.at(-1)!.summary) !== JSON.stringify(exact)
    ) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Quiet for more than the interval: nothing else arrives, the last message stays the exact one.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await subscription.return?.();
    await reading;

    expect(received.at(-1)!.summary).toEqual(exact);
    const gaps = received.slice(1).map((message, index) => message.at - received[index]!.at);
    // Measured at the client: a message delayed in transit can land a few ms closer to the next one.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(980);
    expect(received.length).toBeGreaterThan(2);
    expect(received.length).toBeLessThanOrEqual(2 + Math.ceil(burstMs / 1000));
    console.info(
      `burst of 1000 changes in ${Math.round(burstMs)} ms: ${received.length} messages, smallest gap ${Math.round(Math.min(...gaps))} ms`,
    );
  });
});
