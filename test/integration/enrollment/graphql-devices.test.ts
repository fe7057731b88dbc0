import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { encodeCursor } from '../../../src/graphql/cursor.js';
import { openssl } from '../../support/openssl.js';
import { LiveFeed, wsClient } from '../../support/live-feed.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

let service: TestService;
let work: string;
let facilities: string;
let operator: string;
let viewer: string;
let admin: string;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  work = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-gql-devices-'));
  [facilities, operator, viewer, admin] = await Promise.all([
    service.token('facilities', 'inventory-team'),
    service.token('operator', 'soc-operator'),
    service.token('viewer', 'dashboard'),
    service.token('admin', 'auditor'),
  ]);
});

afterAll(async () => {
  await service?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

type Result = { __typename: string } & Record<string, unknown>;
type Errors = Array<{ message: string; extensions?: Record<string, unknown> }>;

async function gql<T = Record<string, unknown>>(
  token: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<{ data?: T; errors?: Errors }> {
  const { status, body } = await graphql<T>(service.app.urls.graphql, token, query, variables);
  expect(status, JSON.stringify(body.errors)).toBe(200);
  return body;
}

/** Runs an operation that must not fail at the GraphQL level and returns its data. */
async function ok<T = Record<string, unknown>>(
  token: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<T> {
  const body = await gql<T>(token, query, variables);
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  return body.data!;
}

// Asymmetric matchers are typed `any`; these keep them out of the lint's way.
const aString: unknown = expect.any(String);
const containing = (partial: Record<string, unknown>): unknown => expect.objectContaining(partial);
const matching = (pattern: RegExp): unknown => expect.stringMatching(pattern);

const commitmentOf = (seed: string) => `sha256:${createHash('sha256').update(seed).digest('hex')}`;

const DEVICE_FIELDS = `id deviceId type model siteId criticality attestationStatus enrollmentState
  cdiCommitment expectedCdiCommitment nextChallengeAt registeredAt updatedAt`;

const REGISTER = `mutation ($input: RegisterDeviceInput!) {
  registerDevice(input: $input) {
    __typename
    ... on MutationRegisterDeviceSuccess { data { outcome device { ${DEVICE_FIELDS} } } }
    ... on ValidationFailed { field message }
    ... on Error { code }
  }
}`;

const IMPORT = `mutation ($input: ImportDeviceInventoryInput!) {
  importDeviceInventory(input: $input) {
    __typename
    ... on MutationImportDeviceInventorySuccess {
      data { total created updated unchanged reRegistered failed rows { row deviceId outcome field message } }
    }
    ... on ValidationFailed { field message }
  }
}`;

const DEVICES = `query ($first: Int, $after: String, $last: Int, $before: String, $filter: DeviceFilter) {
  devices(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    edges { cursor node { deviceId type enrollmentState } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

const DEVICE = `query ($deviceId: String!) {
  device(deviceId: $deviceId) {
    ${DEVICE_FIELDS}
    currentCertificate { serial status fingerprint pem }
    certificates { serial status revokedAt revocationReason notBefore notAfter issuedAt }
    cases { number title severity status source openedAt evidence }
  }
}`;

/** The selection every decision mutation shares; `more` adds the error types only some can return. */
const DECISION_RESULT = (success: string, more = '') => `{
    __typename
    ... on ${success} { data { ${DEVICE_FIELDS} } }
    ... on InvalidTransition { from to }
    ... on DeviceNotFound { deviceId }
    ${more}
    ... on Error { code message }
  }`;
const APPROVE = `mutation ($deviceId: String!) {
  approveDevice(deviceId: $deviceId) ${DECISION_RESULT('MutationApproveDeviceSuccess')}
}`;
const REJECT = `mutation ($deviceId: String!, $reason: String!) {
  rejectDevice(deviceId: $deviceId, reason: $reason)
    ${DECISION_RESULT('MutationRejectDeviceSuccess', '... on ValidationFailed { field }')}
}`;
const REVOKE = `mutation ($deviceId: String!, $reason: String!, $reasonCode: RevocationReason) {
  revokeDevice(deviceId: $deviceId, reason: $reason, reasonCode: $reasonCode)
    ${DECISION_RESULT('MutationRevokeDeviceSuccess', '... on ValidationFailed { field }')}
}`;

const ISSUE_OTT = `mutation ($deviceId: String!) {
  issueEnrollmentToken(deviceId: $deviceId) {
    __typename
    ... on MutationIssueEnrollmentTokenSuccess { data { ott expiresAt } }
    ... on ValidationFailed { field }
    ... on Error { code message }
  }
}`;

interface DeviceView {
  id: string;
  deviceId: string;
  type: string;
  siteId: string | null;
  criticality: string;
  attestationStatus: string;
  enrollmentState: string;
  cdiCommitment: string | null;
  nextChallengeAt: string | null;
  currentCertificate: { serial: string; status: string; fingerprint: string; pem: string } | null;
  certificates: Array<{
    serial: string;
    status: string;
    revokedAt: string | null;
    revocationReason: string | null;
  }>;
  cases: Array<{
    number: number;
    source: string;
    severity: string;
    status: string;
    evidence: Record<string, unknown>;
  }>;
}

async function register(deviceId: string, extra: Record<string, unknown> = {}): Promise<Result> {
  const data = await ok<{ registerDevice: Result }>(facilities, REGISTER, {
    input: { deviceId, deviceType: 'PLC', expectedCdiCommitment: commitmentOf(deviceId), ...extra },
  });
  return data.registerDevice;
}

async function device(deviceId: string): Promise<DeviceView | null> {
  return (await ok<{ device: DeviceView | null }>(viewer, DEVICE, { deviceId })).device;
}

/** A PEM CSR with CN = deviceId, made by the real openssl CLI (P-256 key). */
async function makeCsr(deviceId: string): Promise<string> {
  const key = path.join(work, `${deviceId}.key`);
  const csr = path.join(work, `${deviceId}.csr`);
  const result = await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    `/CN=${deviceId}`,
    '-keyout',
    key,
    '-out',
    csr,
  ]);
  expect(result.code, result.stderr).toBe(0);
  return readFile(csr, 'utf8');
}

/** EST is not reachable from here: enroll through the domain services, as the EST route does. */
async function enroll(deviceId: string, csr?: string): Promise<void> {
  const { otts, enrollment, database } = service.services;
  const { ott } = await otts.issueForOperator(database.orm.em.fork(), deviceId, 'test');
  await enrollment.enroll(database.orm.em.fork(), {
    ott,
    csr: csr ?? (await makeCsr(deviceId)),
    channelBinding: undefined,
    clientAddress: '127.0.0.1',
  });
}

async function registeredAndEnrolled(deviceId: string, extra: Record<string, unknown> = {}): Promise<void> {
  expect((await register(deviceId, extra)).__typename).toBe('MutationRegisterDeviceSuccess');
  await enroll(deviceId);
}

describe('registerDevice', () => {
  it('registers with a facilities token, idempotently', async () => {
    const first = await register('reg-plc-1', { model: 'S7-1500', site: 'plant-a', criticality: 'CRITICAL' });
    expect(first).toMatchObject({
      __typename: 'MutationRegisterDeviceSuccess',
      data: {
        outcome: 'CREATED',
        device: {
          deviceId: 'reg-plc-1',
          type: 'PLC',
          model: 'S7-1500',
          siteId: 'plant-a',
          criticality: 'CRITICAL',
          attestationStatus: 'PENDING',
          enrollmentState: 'REGISTERED',
          expectedCdiCommitment: commitmentOf('reg-plc-1'),
          cdiCommitment: null,
          nextChallengeAt: null,
        },
      },
    });
    const again = await register('reg-plc-1', { model: 'S7-1500', site: 'plant-a', criticality: 'CRITICAL' });
    expect(again).toMatchObject({ data: { outcome: 'UNCHANGED' } });
    const changed = await register('reg-plc-1', {
      model: 'S7-1200',
      site: 'plant-a',
      criticality: 'CRITICAL',
    });
    expect(changed).toMatchObject({ data: { outcome: 'UPDATED', device: { model: 'S7-1200' } } });
    expect((await device('reg-plc-1'))?.criticality).toBe('CRITICAL');
  });

  it('refuses a viewer in the schema', async () => {
    const body = await gql(viewer, REGISTER, { input: { deviceId: 'reg-by-viewer', deviceType: 'HMI' } });
    expect(body.data?.registerDevice ?? null).toBeNull();
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(await device('reg-by-viewer')).toBeNull();
  });

  it('names an invalid field the way the caller wrote it', async () => {
    const result = await register('reg-bad', { expectedCdiCommitment: 'sha256:XYZ' });
    expect(result).toMatchObject({ __typename: 'ValidationFailed', field: 'expectedCdiCommitment' });
    const badId = await register('bad/id');
    expect(badId).toMatchObject({ __typename: 'ValidationFailed', field: 'deviceId' });
    expect(await device('reg-bad')).toBeNull();
  });

  it('creates a device once when two registrations race', async () => {
    const results = await Promise.all([register('reg-race'), register('reg-race')]);
    const outcomes = results.map((result) =>
      result.__typename === 'MutationRegisterDeviceSuccess'
        ? (result.data as { outcome: string }).outcome
        : result.__typename,
    );
    expect(outcomes.filter((outcome) => outcome === 'CREATED')).toHaveLength(1);
    expect(['UNCHANGED', 'Conflict']).toContain(outcomes.find((outcome) => outcome !== 'CREATED'));
  });
});

describe('importDeviceInventory', () => {
  const csv = [
    'device_id,device_type,model,site,criticality,expected_cdi_commitment',
    `imp-rtu-1,RTU,ION,plant-b,critical,${commitmentOf('imp-rtu-1')}`,
    'imp-bad-2,TOASTER,,plant-b,,',
    `imp-cam-3,IP_CAM,,plant-b,standard,`,
  ].join('\n');

  it('reports a bad row and creates the others; importing again changes nothing', async () => {
    const first = await ok<{ importDeviceInventory: Result }>(facilities, IMPORT, { input: { csv } });
    expect(first.importDeviceInventory).toEqual({
      __typename: 'MutationImportDeviceInventorySuccess',
      data: {
        total: 3,
        created: 2,
        updated: 0,
        unchanged: 0,
        reRegistered: 0,
        failed: 1,
        rows: [
          { row: 1, deviceId: 'imp-rtu-1', outcome: 'CREATED', field: null, message: null },
          { row: 2, deviceId: 'imp-bad-2', outcome: null, field: 'device_type', message: aString },
          { row: 3, deviceId: 'imp-cam-3', outcome: 'CREATED', field: null, message: null },
        ],
      },
    });
    expect(await device('imp-rtu-1')).toMatchObject({
      type: 'RTU',
      siteId: 'plant-b',
      criticality: 'CRITICAL',
    });
    expect(await device('imp-bad-2')).toBeNull();

    const again = await ok<{ importDeviceInventory: { data: Record<string, unknown> } }>(facilities, IMPORT, {
      input: { csv },
    });
    expect(again.importDeviceInventory.data).toMatchObject({
      total: 3,
      created: 0,
      updated: 0,
      unchanged: 2,
      failed: 1,
    });
  });

  it('imports a structured list and JSON lines, naming bad fields in each one’s vocabulary', async () => {
    const list = await ok<{ importDeviceInventory: { data: { rows: unknown[]; created: number } } }>(
      facilities,
      IMPORT,
      {
        input: {
          devices: [
            { deviceId: 'imp-list-1', deviceType: 'GATEWAY', criticality: 'STANDARD' },
            { deviceId: 'imp-list-2', deviceType: 'SENSOR', goldenFirmwareHash: 'md5:abc' },
          ],
        },
      },
    );
    expect(list.importDeviceInventory.data.created).toBe(1);
    expect(list.importDeviceInventory.data.rows[1]).toMatchObject({
      deviceId: 'imp-list-2',
      outcome: null,
      field: 'goldenFirmwareHash',
    });

    const jsonLines = [
      JSON.stringify({ device_id: 'imp-jsonl-1', device_type: 'HMI' }),
      JSON.stringify({ device_id: 'imp-list-1', device_type: 'GATEWAY', model: 'edge-9' }),
    ].join('\n');
    const lines = await ok<{ importDeviceInventory: { data: Record<string, unknown> } }>(facilities, IMPORT, {
      input: { jsonLines },
    });
    expect(lines.importDeviceInventory.data).toMatchObject({ total: 2, created: 1, updated: 1, failed: 0 });
  });

  it('wants exactly one of devices, csv and jsonLines', async () => {
    for (const input of [{}, { csv, jsonLines: '{}' }]) {
      const result = await ok<{ importDeviceInventory: Result }>(facilities, IMPORT, { input });
      expect(result.importDeviceInventory).toMatchObject({ __typename: 'ValidationFailed', field: 'input' });
    }
    const body = await gql(viewer, IMPORT, { input: { csv } });
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});

describe('devices connection', () => {
  const COUNT = 520;
  const ids = Array.from({ length: COUNT }, (_, index) => `pg-${String(index).padStart(4, '0')}`);

  interface Page {
    devices: {
      totalCount: number;
      edges: Array<{ cursor: string; node: { deviceId: string; type: string } }>;
      pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string; endCursor: string };
    };
  }
  const page = (variables: Record<string, unknown>) => ok<Page>(viewer, DEVICES, variables);
  const idsOf = (result: Page) => result.devices.edges.map((edge) => edge.node.deviceId);

  beforeAll(async () => {
    // Inserted out of order, so order comes from the query and not from insertion.
    const shuffled = [...ids].sort((a, b) =>
      a.split('').reverse().join('') < b.split('').reverse().join('') ? -1 : 1,
    );
    const result = await ok<{ importDeviceInventory: { data: { created: number } } }>(facilities, IMPORT, {
      input: {
        devices: [
          ...shuffled.map((deviceId) => ({
            deviceId,
            deviceType: Number(deviceId.slice(3)) % 2 === 0 ? 'PLC' : 'RTU',
          })),
          { deviceId: 'pgx_1', deviceType: 'OTHER' },
          { deviceId: 'pgxa1', deviceType: 'OTHER' },
        ],
      },
    });
    expect(result.importDeviceInventory.data.created).toBe(COUNT + 2);
  });

  it('pages forward by device id with a keyset cursor', async () => {
    const first = await page({ filter: { deviceIdPrefix: 'pg-' } });
    expect(first.devices.totalCount).toBe(COUNT);
    expect(idsOf(first)).toEqual(ids.slice(0, 50));
    expect(first.devices.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });

    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const next = await page({ first: 200, after, filter: { deviceIdPrefix: 'pg-' } });
      seen.push(...idsOf(next));
      expect(next.devices.totalCount).toBe(COUNT);
      if (!next.devices.pageInfo.hasNextPage) break;
      after = next.devices.pageInfo.endCursor;
    }
    expect(seen).toEqual(ids);
  });

  it('serves at most 500 per page and refuses a larger page instead of trimming it', async () => {
    const big = await page({ first: 500, filter: { deviceIdPrefix: 'pg-' } });
    expect(idsOf(big)).toEqual(ids.slice(0, 500));
    expect(big.devices.pageInfo.hasNextPage).toBe(true);
    const rest = await page({
      first: 500,
      after: big.devices.pageInfo.endCursor,
      filter: { deviceIdPrefix: 'pg-' },
    });
    expect(idsOf(rest)).toEqual(ids.slice(500));
    expect(rest.devices.pageInfo.hasNextPage).toBe(false);
    for (const size of [{ first: 501 }, { last: 1000 }]) {
      const refused = await gql(viewer, DEVICES, { ...size, filter: { deviceIdPrefix: 'pg-' } });
      expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'PAGE_SIZE_EXCEEDED', max: 500 });
    }
  });

  it('pages backward with last and before', async () => {
    const around = await page({
      first: 1,
      after: encodeCursor('device', JSON.stringify(['DEVICE_ID', null, 'pg-0099'])),
      filter: { deviceIdPrefix: 'pg-' },
    });
    expect(idsOf(around)).toEqual(['pg-0100']);
    const back = await page({
      last: 5,
      before: around.devices.edges[0]!.cursor,
      filter: { deviceIdPrefix: 'pg-' },
    });
    expect(idsOf(back)).toEqual(['pg-0095', 'pg-0096', 'pg-0097', 'pg-0098', 'pg-0099']);
    expect(back.devices.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
  });

  it('filters by type and by a literal device id prefix', async () => {
    const rtus = await page({ first: 500, filter: { deviceIdPrefix: 'pg-', type: ['RTU'] } });
    expect(rtus.devices.totalCount).toBe(COUNT / 2);
    expect(new Set(rtus.devices.edges.map((edge) => edge.node.type))).toEqual(new Set(['RTU']));
    expect((await page({ filter: { deviceIdPrefix: 'pg-00' } })).devices.totalCount).toBe(100);
    const underscore = await page({ filter: { deviceIdPrefix: 'pgx_' } });
    expect(idsOf(underscore)).toEqual(['pgx_1']);
    const both = await page({ filter: { deviceIdPrefix: 'pg', type: ['OTHER', 'HMI'] } });
    expect(idsOf(both)).toEqual(['pgx_1', 'pgxa1']);
  });

  it('answers a bad cursor with a typed error', async () => {
    for (const after of ['not-a-cursor', encodeCursor('audit', '12')]) {
      const body = await gql(viewer, DEVICES, { after });
      expect(body.data ?? null).toBeNull();
      expect(body.errors?.[0]?.extensions?.code).toBe('INVALID_CURSOR');
    }
  });

  it('loads certificates and cases of a whole page in one query each', async () => {
    const connection = service.services.database.orm.em.getConnection();
    const execute = vi.spyOn(connection, 'execute');
    try {
      const result = await ok<{
        devices: { edges: Array<{ node: { certificates: unknown[]; cases: unknown[] } }> };
      }>(
        viewer,
        `{ devices(first: 100, filter: { deviceIdPrefix: "pg-" }) {
            edges { node { deviceId certificates { serial } currentCertificate { serial } cases { number } } }
          } }`,
      );
      expect(result.devices.edges).toHaveLength(100);
      const sql = execute.mock.calls.map((call) => (typeof call[0] === 'string' ? call[0] : ''));
      expect(sql.filter((text) => /from "device_certificate"/.test(text))).toHaveLength(2);
      expect(sql.filter((text) => /"case_record"/.test(text))).toHaveLength(1);
    } finally {
      execute.mockRestore();
    }
  });
});

describe('enrollment decisions', () => {
  it('refuses to approve a device that has not enrolled', async () => {
    await register('dec-registered');
    const { approveDevice } = await ok<{ approveDevice: Result }>(operator, APPROVE, {
      deviceId: 'dec-registered',
    });
    expect(approveDevice).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'REGISTERED',
      to: 'APPROVED',
    });
    expect((await device('dec-registered'))?.enrollmentState).toBe('REGISTERED');
  });

  it('names an unknown device', async () => {
    for (const [query, variables] of [
      [APPROVE, { deviceId: 'dec-nowhere' }],
      [REVOKE, { deviceId: 'dec-nowhere', reason: 'lost in transit' }],
      [REJECT, { deviceId: 'dec-nowhere', reason: 'not ours' }],
    ] as const) {
      const data = await ok<Record<string, Result>>(operator, query, variables);
      expect(Object.values(data)[0]).toMatchObject({ __typename: 'DeviceNotFound', deviceId: 'dec-nowhere' });
    }
  });

  it('keeps decisions to operators', async () => {
    const body = await gql(facilities, APPROVE, { deviceId: 'dec-registered' });
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('issues an enrollment token only for a device with an expected commitment', async () => {
    await register('ott-with');
    const issued = await ok<{ issueEnrollmentToken: Result }>(operator, ISSUE_OTT, { deviceId: 'ott-with' });
    expect(issued.issueEnrollmentToken.__typename).toBe('MutationIssueEnrollmentTokenSuccess');
    const data = issued.issueEnrollmentToken.data as { ott: string; expiresAt: string };
    expect(data.ott).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Date(data.expiresAt).getTime()).toBeGreaterThan(Date.now());

    await register('ott-without', { expectedCdiCommitment: null });
    const refused = await ok<{ issueEnrollmentToken: Result }>(operator, ISSUE_OTT, {
      deviceId: 'ott-without',
    });
    expect(refused.issueEnrollmentToken).toMatchObject({ __typename: 'ValidationFailed', field: 'deviceId' });

    const unknown = await ok<{ issueEnrollmentToken: Result }>(operator, ISSUE_OTT, {
      deviceId: 'ott-nowhere',
    });
    expect(unknown.issueEnrollmentToken).toMatchObject({ __typename: 'Forbidden', code: 'FORBIDDEN' });

    const byViewer = await gql(viewer, ISSUE_OTT, { deviceId: 'ott-with' });
    expect(byViewer.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('approves an enrolled device: VERIFIED, first challenge scheduled', async () => {
    await registeredAndEnrolled('dec-approve');
    expect(await device('dec-approve')).toMatchObject({
      enrollmentState: 'ENROLLED',
      attestationStatus: 'PENDING',
    });
    const { approveDevice } = await ok<{ approveDevice: Result }>(operator, APPROVE, {
      deviceId: 'dec-approve',
    });
    expect(approveDevice).toMatchObject({
      __typename: 'MutationApproveDeviceSuccess',
      data: {
        enrollmentState: 'APPROVED',
        attestationStatus: 'VERIFIED',
        cdiCommitment: commitmentOf('dec-approve'),
      },
    });
    const approved = (await device('dec-approve'))!;
    expect(approved.nextChallengeAt).not.toBeNull();
    expect(approved.currentCertificate).toMatchObject({ status: 'ACTIVE' });
    expect(approved.currentCertificate?.pem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(approved.certificates).toHaveLength(1);

    const twice = await ok<{ approveDevice: Result }>(operator, APPROVE, { deviceId: 'dec-approve' });
    expect(twice.approveDevice).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'APPROVED',
      to: 'APPROVED',
    });
  });

  it('rejects an enrolled device: certificate revoked, case opened, hidden from the fleet list', async () => {
    await registeredAndEnrolled('dec-reject');
    const short = await ok<{ rejectDevice: Result }>(operator, REJECT, {
      deviceId: 'dec-reject',
      reason: 'x',
    });
    expect(short.rejectDevice).toMatchObject({ __typename: 'ValidationFailed', field: 'reason' });

    const { rejectDevice } = await ok<{ rejectDevice: Result }>(operator, REJECT, {
      deviceId: 'dec-reject',
      reason: 'not on the purchase order',
    });
    expect(rejectDevice).toMatchObject({
      __typename: 'MutationRejectDeviceSuccess',
      data: { enrollmentState: 'REJECTED', attestationStatus: 'REVOKED', nextChallengeAt: null },
    });
    const rejected = (await device('dec-reject'))!;
    expect(rejected.currentCertificate).toBeNull();
    expect(rejected.certificates).toEqual([
      expect.objectContaining({
        status: 'REVOKED',
        revocationReason: 'PRIVILEGE_WITHDRAWN',
        revokedAt: aString,
      }),
    ]);
    expect(rejected.cases).toEqual([
      expect.objectContaining({
        source: 'ENROLLMENT_REJECTED',
        status: 'OPEN',
        evidence: containing({ reason: 'not on the purchase order' }),
      }),
    ]);

    const listed = (filter: Record<string, unknown>) =>
      ok<{ devices: { totalCount: number } }>(viewer, DEVICES, {
        filter: { deviceIdPrefix: 'dec-reject', ...filter },
      });
    expect((await listed({})).devices.totalCount).toBe(0);
    expect((await listed({ includeRejected: true })).devices.totalCount).toBe(1);
    expect((await listed({ enrollmentState: ['REJECTED'] })).devices.totalCount).toBe(1);
  });
});

describe('revokeDevice and deviceEvents', () => {
  let client: Client;

  beforeAll(() => {
    client = wsClient(service.app.urls.graphql, viewer);
  });

  afterAll(async () => {
    await client?.dispose();
  });

  interface Event {
    deviceId: string;
    change: string;
    attestationStatus: string;
    enrollmentState: string;
    previousAttestationStatus: string | null;
    site: string | null;
    actor: string;
    reason: string | null;
    occurredAt: string;
    device: {
      enrollmentState: string;
      currentCertificate: null | { serial: string };
      certificates: Array<{ status: string }>;
    } | null;
  }

  it('revokes a device and streams the change to a subscriber filtered by site', async () => {
    await registeredAndEnrolled('live-target', { site: 'live-site' });
    await registeredAndEnrolled('live-elsewhere', { site: 'other-site' });
    await register('live-probe', { site: 'live-site' });
    const probeCsr = await makeCsr('live-probe');

    const feed = new LiveFeed(
      client,
      {
        query: `subscription ($filter: DeviceEventFilter) {
          deviceEvents(filter: $filter) {
            ... on DeviceEvent {
              deviceId change attestationStatus enrollmentState previousAttestationStatus site actor reason occurredAt
              device { enrollmentState currentCertificate { serial } certificates { status } }
            }
          }
        }`,
        variables: { filter: { site: 'live-site' } },
      },
      (data: { deviceEvents: Event }) => data.deviceEvents,
    );
    // Enroll the probe (revoking it and registering it again between attempts) until its event arrives.
    await feed.untilLive(
      (event) => event.deviceId === 'live-probe',
      async (attempt) => {
        if (attempt > 0) {
          await ok(operator, REVOKE, { deviceId: 'live-probe', reason: 'probe cycle' });
          await register('live-probe', { site: 'live-site' });
        }
        await enroll('live-probe', probeCsr);
      },
    );

    await ok(operator, APPROVE, { deviceId: 'live-target' });
    const approval = await feed.waitFor((event) => event.deviceId === 'live-target');
    expect(approval).toMatchObject({
      change: 'approved',
      previousAttestationStatus: 'PENDING',
      device: { enrollmentState: 'APPROVED', currentCertificate: { serial: aString } },
    });

    const elsewhere = await ok<{ revokeDevice: Result }>(operator, REVOKE, {
      deviceId: 'live-elsewhere',
      reason: 'decommissioned',
    });
    expect(elsewhere.revokeDevice.__typename).toBe('MutationRevokeDeviceSuccess');
    const { revokeDevice } = await ok<{ revokeDevice: Result }>(operator, REVOKE, {
      deviceId: 'live-target',
      reason: 'key found on a forum',
      reasonCode: 'KEY_COMPROMISE',
    });
    expect(revokeDevice).toMatchObject({
      __typename: 'MutationRevokeDeviceSuccess',
      data: { enrollmentState: 'REVOKED', attestationStatus: 'REVOKED', nextChallengeAt: null },
    });

    const event = await feed.waitFor(
      (candidate) => candidate.deviceId === 'live-target' && candidate.change !== 'approved',
    );
    expect(event).toMatchObject({
      change: 'revoked',
      attestationStatus: 'REVOKED',
      enrollmentState: 'REVOKED',
      previousAttestationStatus: 'VERIFIED',
      site: 'live-site',
      actor: matching(/^token:soc-operator\//),
      reason: 'key found on a forum',
      device: { enrollmentState: 'REVOKED', currentCertificate: null, certificates: [{ status: 'REVOKED' }] },
    });
    // The device is read afresh for each event, not from the first event's cache.
    // Events are delivered in commit order: the other site's revocation, committed first, was filtered out.
    expect(feed.received.filter((candidate) => candidate.deviceId === 'live-elsewhere')).toEqual([]);
    await feed.close();

    const revoked = (await device('live-target'))!;
    expect(revoked.certificates).toEqual([
      expect.objectContaining({ status: 'REVOKED', revocationReason: 'KEY_COMPROMISE' }),
    ]);
    const again = await ok<{ revokeDevice: Result }>(operator, REVOKE, {
      deviceId: 'live-target',
      reason: 'again',
    });
    expect(again.revokeDevice).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'REVOKED',
      to: 'REVOKED',
    });
  });
});

describe('racing decisions', () => {
  const ROUNDS = 50; // the runbook asks for 50 races

  it('runs approve and revoke of one device one after the other, each success audited exactly once', async () => {
    const ids = Array.from({ length: ROUNDS }, (_, index) => `race-${index}`);
    const csrs = await Promise.all(ids.map((id) => makeCsr(id)));
    for (const [index, id] of ids.entries()) {
      await register(id);
      await enroll(id, csrs[index]);
    }

    const outcomes: Array<{ id: string; approve: Result; revoke: Result }> = [];
    for (const id of ids) {
      const [approve, revoke] = await Promise.all([
        ok<{ approveDevice: Result }>(operator, APPROVE, { deviceId: id }),
        ok<{ revokeDevice: Result }>(operator, REVOKE, { deviceId: id, reason: 'racing the approval' }),
      ]);
      outcomes.push({ id, approve: approve.approveDevice, revoke: revoke.revokeDevice });
    }

    const audit = await auditTrail();
    for (const { id, approve, revoke } of outcomes) {
      // The decisions run one after the other. Revoking is legal from ENROLLED and from APPROVED, so the
      // revoke always succeeds; the approval succeeds only if it went first.
      const approved = approve.__typename === 'MutationApproveDeviceSuccess';
      expect(revoke.__typename, id).toBe('MutationRevokeDeviceSuccess');
      if (!approved)
        expect(approve, id).toMatchObject({
          __typename: 'InvalidTransition',
          from: 'REVOKED',
          to: 'APPROVED',
        });

      const final = (await device(id))!;
      expect(final.enrollmentState, id).toBe('REVOKED');
      expect(final.attestationStatus, id).toBe('REVOKED');

      const events = audit.filter((event) => event.subject === `device:${id}`).map((event) => event.action);
      expect(
        events.filter((action) => action === 'device.revoked'),
        id,
      ).toHaveLength(1);
      expect(
        events.filter((action) => action === 'device.approved'),
        id,
      ).toHaveLength(approved ? 1 : 0);
      if (approved)
        expect(events.indexOf('device.approved'), id).toBeLessThan(events.indexOf('device.revoked'));
    }
  });
});

// Embedded PGlite serves one connection at a time, so these interleavings need PostgreSQL.
describe.runIf(inject('databaseMode') === 'postgresql')(
  'a change while the scheduler claims the device',
  () => {
    /**
     * Starts `change` while another connection holds the device as the challenge scheduler does when it
     * sends a challenge (row locked, next challenge moved on, version bumped), and lets the claim commit
     * only once `change` waits for it.
     */
    async function duringClaim<T>(deviceId: string, change: () => Promise<T>): Promise<T> {
      const pool = new pg.Pool({ connectionString: service.config.databaseUrl, max: 2 });
      const scheduler = await pool.connect();
      try {
        await scheduler.query('begin');
        await scheduler.query(`select id from device where device_id = $1 for update`, [deviceId]);
        const changing = change();
        await until(
          async () => {
            const { rows } = await pool.query<{ waiting: number }>(
              `select count(*)::int as waiting from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'`,
            );
            return rows[0]!.waiting;
          },
          (waiting) => waiting > 0,
        );
        await scheduler.query(
          `update device set next_challenge_at = now() + interval '5 minutes', version = version + 1
          where device_id = $1`,
          [deviceId],
        );
        await scheduler.query('commit');
        return await changing;
      } finally {
        scheduler.release();
        await pool.end();
      }
    }

    async function approved(deviceId: string): Promise<void> {
      await registeredAndEnrolled(deviceId, { site: 'claim-site-a' });
      await ok(operator, APPROVE, { deviceId });
    }

    it('revokes the device', async () => {
      await approved('claimed-revoke');
      const { revokeDevice } = await duringClaim('claimed-revoke', () =>
        ok<{ revokeDevice: Result }>(operator, REVOKE, {
          deviceId: 'claimed-revoke',
          reason: 'revoked mid-claim',
        }),
      );
      expect(revokeDevice).toMatchObject({
        __typename: 'MutationRevokeDeviceSuccess',
        data: { enrollmentState: 'REVOKED', attestationStatus: 'REVOKED', nextChallengeAt: null },
      });
    });

    it('moves the device to another site through registerDevice', async () => {
      await approved('claimed-register');
      const result = await duringClaim('claimed-register', () =>
        register('claimed-register', { site: 'claim-site-b' }),
      );
      expect(result).toMatchObject({
        __typename: 'MutationRegisterDeviceSuccess',
        data: { outcome: 'UPDATED' },
      });
      expect(await device('claimed-register')).toMatchObject({
        siteId: 'claim-site-b',
        enrollmentState: 'APPROVED',
      });
    });

    it('moves the device to another site through an import', async () => {
      await approved('claimed-import');
      const csv = [
        'device_id,device_type,site,expected_cdi_commitment',
        `claimed-import,PLC,claim-site-b,${commitmentOf('claimed-import')}`,
      ].join('\n');
      const { importDeviceInventory } = await duringClaim('claimed-import', () =>
        ok<{ importDeviceInventory: Result }>(facilities, IMPORT, { input: { csv } }),
      );
      expect(importDeviceInventory).toMatchObject({ data: { updated: 1, failed: 0 } });
      expect(await device('claimed-import')).toMatchObject({ siteId: 'claim-site-b' });
    });
  },
);

/** The whole audit trail through the admin query, in chain order. */
async function auditTrail(): Promise<Array<{ action: string; subject: string }>> {
  const events: Array<{ action: string; subject: string }> = [];
  let after: string | null = null;
  for (;;) {
    const data: {
      auditEvents: {
        edges: Array<{ node: { action: string; subject: string } }>;
        pageInfo: { hasNextPage: boolean; endCursor: string };
      };
    } = await ok(
      admin,
      `query ($after: String) { auditEvents(first: 500, after: $after) {
        edges { node { action subject } } pageInfo { hasNextPage endCursor } } }`,
      { after },
    );
    events.push(...data.auditEvents.edges.map((edge) => edge.node));
    if (!data.auditEvents.pageInfo.hasNextPage) return events;
    after = data.auditEvents.pageInfo.endCursor;
  }
}
