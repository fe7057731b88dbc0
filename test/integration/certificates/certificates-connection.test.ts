import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/shared/clock.js';
import { openssl, opensslCsr, scratchDir, type Scratch } from '../../support/openssl.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let viewer: string;
let scratch: Scratch;
const clock = new ManualClock(new Date('2026-11-29T12:00:00Z'));
const prefix = `crt-${randomBytes(2).toString('hex')}`;
/** Enrolled in this order, an hour apart; the last one is revoked. */
const devices = ['a', 'b', 'c'].map((suffix) => `${prefix}-${suffix}`);

/** Registers `deviceId` and enrolls a P-256 CSR made by `openssl req`, as a device would. */
async function enroll(deviceId: string): Promise<void> {
  const { csrPem } = await opensslCsr(scratch, deviceId, {
    newkey: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    subject: `/CN=${deviceId}`,
  });
  const { inventory, otts, enrollment, database } = service.services;
  const em = () => database.orm.em.fork();
  await inventory.register(
    em(),
    {
      device_id: deviceId,
      device_type: 'GATEWAY',
      expected_cdi_commitment: `sha256:${createHash('sha256').update(deviceId).digest('hex')}`,
    },
    'test',
  );
  const { ott } = await otts.issueForOperator(em(), deviceId, 'test');
  await enrollment.enroll(em(), {
    ott,
    csr: csrPem,
    channelBinding: undefined,
    clientAddress: '127.0.0.1',
  });
}

beforeAll(async () => {
  scratch = await scratchDir('fp-certs-');
  service = await startTestService({ mqtt: 'embedded', clock });
  viewer = await service.token('viewer');
  for (const deviceId of devices) {
    await enroll(deviceId);
    clock.advance(3_600_000);
  }
  await service.services.lifecycle.revoke(
    service.services.database.orm.em.fork(),
    devices[2]!,
    'lost in transit',
    'KEY_COMPROMISE',
    'test',
  );
});

afterAll(async () => {
  await service?.close();
  await scratch.remove();
});

type Page = {
  certificates: {
    totalCount: number;
    edges: Array<{ cursor: string; node: { serial: string; status: string; pem: string } }>;
    pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; endCursor: string | null };
  };
};

const QUERY = `
  query P($filter: CertificateFilter, $first: Int, $after: String, $last: Int, $before: String) {
    certificates(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
      totalCount
      edges { cursor node { serial status pem } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
`;

async function page(variables: Record<string, unknown>) {
  const { body } = await graphql<Page>(service.app.urls.graphql, viewer, QUERY, variables);
  expect(body.errors).toBeUndefined();
  return body.data!.certificates;
}

/** The CN of each certificate of a page, read from its PEM by OpenSSL. */
async function subjectsOf(certificates: Page['certificates']): Promise<string[]> {
  const names: string[] = [];
  for (const { node } of certificates.edges) {
    const printed = await openssl(['x509', '-noout', '-subject', '-nameopt', 'multiline'], node.pem);
    names.push(/commonName\s*=\s*(\S+)/.exec(printed.stdout)![1]!);
  }
  return names;
}

describe('certificates connection', () => {
  it('lists newest first and pages forward to an exact last page', async () => {
    const newest = [...devices].reverse();
    const all = await page({ first: 3 });
    expect(all.totalCount).toBe(3);
    expect(await subjectsOf(all)).toEqual(newest);
    expect(all.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });

    const first = await page({ first: 2 });
    expect(first.pageInfo.hasNextPage).toBe(true);
    const rest = await page({ first: 2, after: first.pageInfo.endCursor });
    expect(await subjectsOf(rest)).toEqual([devices[0]]);
    expect(rest.pageInfo.hasNextPage).toBe(false);
    expect(rest.totalCount).toBe(3);

    const past = await page({ first: 2, after: rest.pageInfo.endCursor });
    expect(past.edges).toEqual([]);
    expect(past.pageInfo.hasNextPage).toBe(false);
  });

  it('pages backwards with last/before', async () => {
    const oldest = await page({ last: 1 });
    expect(await subjectsOf(oldest)).toEqual([devices[0]]);
    expect(oldest.pageInfo.hasPreviousPage).toBe(true);
    const before = await page({ last: 5, before: oldest.edges[0]!.cursor });
    expect(await subjectsOf(before)).toEqual([devices[2], devices[1]]);
  });

  it('filters by device, status and expiry; an unknown device has none', async () => {
    const one = await page({ filter: { deviceId: devices[1] } });
    expect(one.totalCount).toBe(1);
    expect(await subjectsOf(one)).toEqual([devices[1]]);

    const revoked = await page({ filter: { status: ['REVOKED'] } });
    expect(await subjectsOf(revoked)).toEqual([devices[2]]);
    const active = await page({ filter: { status: ['ACTIVE'] } });
    expect(await subjectsOf(active)).toEqual([devices[1], devices[0]]);

    // Default validity is 30 days from issuance: before day 30 of the first one nothing expires yet.
    const soon = await page({ filter: { expiringBefore: '2026-12-29T12:30:00Z' } });
    expect(await subjectsOf(soon)).toEqual([devices[0]]);

    const none = await page({ filter: { deviceId: `${prefix}-unknown` } });
    expect(none).toEqual({
      totalCount: 0,
      edges: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false, endCursor: null },
    });
  });

  it('refuses a cursor of another list, a forged cursor and a page above the cap, with typed errors', async () => {
    const devicesPage = await graphql<{ devices: { pageInfo: { endCursor: string } } }>(
      service.app.urls.graphql,
      viewer,
      '{ devices(first: 1) { pageInfo { endCursor } } }',
    );
    const foreign = devicesPage.body.data!.devices.pageInfo.endCursor;
    const forged = Buffer.from('certificate:yesterday|x').toString('base64url');
    for (const after of [foreign, forged]) {
      const { body } = await graphql(service.app.urls.graphql, viewer, QUERY, { first: 1, after });
      expect(body.errors?.[0]?.extensions?.code).toBe('INVALID_CURSOR');
    }
    const { body } = await graphql(service.app.urls.graphql, viewer, QUERY, { first: 501 });
    expect(body.errors?.[0]?.extensions).toMatchObject({ code: 'PAGE_SIZE_EXCEEDED', max: 500 });
    expect(body.data ?? null).toBeNull();
  });
});
