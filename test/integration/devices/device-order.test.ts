import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/shared/clock.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let viewer: string;
const clock = new ManualClock(new Date('2026-11-29T12:00:00Z'));
const prefix = `ord-${randomBytes(2).toString('hex')}`;
/** Device suffix -> IOC severity (none: score 0). Scores: CRITICAL 90, HIGH 53, MEDIUM 23 (weights 1.5). */
const SEVERITY: Record<string, string | null> = {
  a: 'MEDIUM',
  b: 'CRITICAL',
  c: null,
  d: 'HIGH',
  e: 'MEDIUM',
};

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock });
  viewer = await service.token('viewer');
  const em = () => service.services.database.orm.em.fork();
  for (const [suffix, severity] of Object.entries(SEVERITY)) {
    const deviceId = `${prefix}-${suffix}`;
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'RTU' }, 'test');
    if (severity) {
      await service.services.risk.reportIocHit(
        em(),
        {
          deviceId,
          indicator: `ioc-${suffix}`,
          source: 'test',
          severity: severity as never,
          observedAt: clock.now(),
        },
        'test',
      );
    }
    clock.advance(3_600_000);
  }
});

afterAll(async () => {
  await service?.close();
});

type Page = {
  devices: {
    totalCount: number;
    edges: Array<{ cursor: string; node: { deviceId: string; riskScore: number } }>;
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  };
};

async function page(variables: Record<string, unknown>) {
  return graphql<Page>(
    service.app.urls.graphql,
    viewer,
    `
      query P(
        $filter: DeviceFilter
        $orderBy: DeviceOrder
        $first: Int
        $after: String
        $last: Int
        $before: String
      ) {
        devices(
          filter: $filter
          orderBy: $orderBy
          first: $first
          after: $after
          last: $last
          before: $before
        ) {
          totalCount
          edges {
            cursor
            node {
              deviceId
              riskScore
            }
          }
          pageInfo {
            hasNextPage
            endCursor
          }
        }
      }
    `,
    { filter: { deviceIdPrefix: prefix }, ...variables },
  );
}

async function walk(orderBy: Record<string, unknown>, size: number): Promise<string[]> {
  const seen: string[] = [];
  let after: string | null = null;
  for (;;) {
    const { body } = await page({ orderBy, first: size, after });
    expect(body.errors).toBeUndefined();
    seen.push(...body.data!.devices.edges.map((edge) => edge.node.deviceId.slice(-1)));
    if (!body.data!.devices.pageInfo.hasNextPage) return seen;
    after = body.data!.devices.pageInfo.endCursor;
  }
}

describe('devices orderBy', () => {
  it('orders by risk score both ways, ties broken by device id in the same direction, across pages', async () => {
    expect(await walk({ field: 'RISK_SCORE', direction: 'DESC' }, 2)).toEqual(['b', 'd', 'e', 'a', 'c']);
    expect(await walk({ field: 'RISK_SCORE', direction: 'ASC' }, 2)).toEqual(['c', 'a', 'e', 'd', 'b']);
    expect(await walk({ field: 'DEVICE_ID' }, 1)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('treats never-attested devices as the oldest and orders them by id', async () => {
    expect(await walk({ field: 'LAST_ATTESTATION', direction: 'DESC' }, 2)).toEqual([
      'e',
      'd',
      'c',
      'b',
      'a',
    ]);
    expect(await walk({ field: 'LAST_ATTESTATION', direction: 'ASC' }, 3)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('pages backwards with last/before', async () => {
    const { body } = await page({ orderBy: { field: 'RISK_SCORE', direction: 'DESC' }, last: 2 });
    expect(body.data!.devices.edges.map((edge) => edge.node.deviceId.slice(-1))).toEqual(['a', 'c']);
    const before = body.data!.devices.edges[0]!.cursor;
    const earlier = await page({ orderBy: { field: 'RISK_SCORE', direction: 'DESC' }, last: 2, before });
    expect(earlier.body.data!.devices.edges.map((edge) => edge.node.deviceId.slice(-1))).toEqual(['d', 'e']);
  });

  it('refuses a cursor of another order as INVALID_CURSOR', async () => {
    const { body } = await page({ orderBy: { field: 'RISK_SCORE' }, first: 1 });
    const cursor = body.data!.devices.pageInfo.endCursor;
    const other = await page({ orderBy: { field: 'LAST_SEEN' }, first: 1, after: cursor });
    expect(other.body.errors?.[0]?.extensions?.code).toBe('INVALID_CURSOR');
  });
});

describe('devices filters', () => {
  it('filters by risk band, score and pending age', async () => {
    const ids = async (filter: Record<string, unknown>) => {
      const { body } = await page({ filter: { deviceIdPrefix: prefix, ...filter }, first: 10 });
      expect(body.errors).toBeUndefined();
      return body.data!.devices.edges.map((edge) => edge.node.deviceId.slice(-1)).sort();
    };
    expect(await ids({ riskBand: ['CRITICAL'] })).toEqual(['b']);
    expect(await ids({ riskBand: ['NORMAL'] })).toEqual(['a', 'c', 'e']);
    expect(await ids({ riskAbove: 23 })).toEqual(['b', 'd']);
    expect(await ids({ isolated: false })).toEqual(['a', 'b', 'c', 'd', 'e']);
    // Registered an hour apart, the last one an hour before now.
    expect(await ids({ pendingLongerThanSeconds: 3 * 3600 + 60 })).toEqual(['a', 'b']);
  });
});
