import { randomUUID } from 'node:crypto';
import type { EntityClass } from '@mikro-orm/core';
import { MikroORM } from '@mikro-orm/postgresql';
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { latestResultsOf } from '../../../src/attestation/attestation-result.queries.js';
import { AttestationChallenge } from '../../../src/attestation/challenge.entity.js';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { AuditService } from '../../../src/audit/audit.service.js';
import { CaseDevice } from '../../../src/cases/case-device.entity.js';
import { CaseEvent } from '../../../src/cases/case-event.entity.js';
import { Case } from '../../../src/cases/case.entity.js';
import { CaseService } from '../../../src/cases/case.service.js';
import { activeCertificatesOf, certificatesOfDevices } from '../../../src/certificates/certificate-list.js';
import { DeviceCertificate } from '../../../src/certificates/device-certificate.entity.js';
import { ormOptions } from '../../../src/db/database.js';
import { plainRows, selectList } from '../../../src/db/plain-rows.js';
import { Device } from '../../../src/devices/device.entity.js';
import { InventoryService } from '../../../src/devices/inventory.service.js';
import { EnrollmentGroup } from '../../../src/enrollment/enrollment-group.entity.js';
import { EnrollmentToken } from '../../../src/enrollment/enrollment-token.entity.js';
import type { GraphQLContext } from '../../../src/graphql/context.js';
import { seqPage, type SeqWhere } from '../../../src/graphql/seq-page.js';
import { RiskFactor } from '../../../src/risk/risk-factor.entity.js';
import { topFactorsOf } from '../../../src/risk/risk-factor.queries.js';
import { Site } from '../../../src/sites/site.entity.js';
import { SiteService } from '../../../src/sites/site.service.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { createEventBus } from '../../../src/shared/event-bus.js';
import { TransactionRunner } from '../../../src/shared/transaction.js';
import { freshDatabaseUrl } from '../../support/database.js';

/**
 * The read paths that return plain rows instead of managed entities (src/db/plain-rows.ts) must
 * return what em.find hydrates, property by property: a column whose driver value differs from the
 * hydrated one (a timestamp as text, a bigint as a string, ...) fails here. Each entity has a row
 * with every column set and a row with every nullable column null.
 */

let orm: MikroORM;
const clock = new ManualClock(new Date('2026-11-29T12:00:00.000Z'));
const audit = new AuditService(clock);
const transactions = new TransactionRunner(createEventBus());
const inventory = new InventoryService(audit, transactions, clock);
const cases = new CaseService(audit, transactions, clock);
const sites = new SiteService(audit, transactions, clock, {
  siteStaleAfterMs: 60_000,
  siteDownAfterMs: 300_000,
  deviceOnlineWindowMs: 120_000,
});

const at = (iso: string) => new Date(iso);
const ids = {
  group: randomUUID(),
  full: randomUUID(),
  sparse: randomUUID(),
  token: randomUUID(),
  challenges: [randomUUID(), randomUUID()] as const,
  fullCase: randomUUID(),
  sparseCase: randomUUID(),
};

beforeAll(async () => {
  orm = await MikroORM.init(ormOptions(await freshDatabaseUrl()));
  const em = orm.em.fork();
  const add = <T extends object>(entity: T, values: Partial<T>) => em.persist(Object.assign(entity, values));
  add(new EnrollmentGroup(), {
    id: ids.group,
    name: 'plain rows',
    chainPems: ['-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n'],
    representativeFingerprint: 'a'.repeat(64),
    allowCommonNames: ['plain-*'],
    denyCommonNames: [],
    defaultDeviceType: 'PLC',
    defaultCriticality: 'critical',
    defaultSiteId: 'plain-site',
    autoApprove: true,
    createdAt: at('2026-01-01T00:00:00.001Z'),
    updatedAt: at('2026-01-01T00:00:00.001Z'),
  });
  // No relations are declared: each flush writes the rows the next ones refer to.
  await em.flush();
  add(new Device(), {
    id: ids.full,
    deviceId: 'plain-full',
    type: 'GATEWAY',
    model: 'Model «Ü» 7',
    siteId: 'plain-site',
    criticality: 'critical',
    expectedCdiCommitment: `sha256:${'1'.repeat(64)}`,
    expectedSpkiSha256: '2'.repeat(64),
    goldenFirmwareHash: `sha256:${'3'.repeat(64)}`,
    cdiCommitment: `sha256:${'1'.repeat(64)}`,
    firmwareVersion: '4.2.0-rc.1',
    firmwareHash: `sha256:${'4'.repeat(64)}`,
    attestationStatus: 'FAILED',
    enrollmentState: 'APPROVED',
    enrollmentGroupId: ids.group,
    nextChallengeAt: at('2099-12-31T23:59:59.999Z'),
    consecutiveFailures: 3,
    // Past 2^53: a bigint that a number would round.
    lastCounter: '9007199254740993',
    lastAttestationAt: at('2026-11-29T11:59:58.123Z'),
    failureKind: 'CHECK_FAILED',
    riskScore: 87,
    riskBand: 'CRITICAL',
    riskScoredAt: at('2026-11-29T11:59:59.456Z'),
    policyBundleVersion: 12,
    isolated: true,
    lastSeenAt: at('2026-11-29T11:59:59.999Z'),
    registeredAt: at('1999-12-31T23:59:59.001Z'),
    updatedAt: at('2026-11-29T12:00:00.000Z'),
    version: 5,
  });
  add(new Device(), {
    id: ids.sparse,
    deviceId: 'plain-sparse',
    type: 'OTHER',
    registeredAt: at('2026-11-29T00:00:00.000Z'),
    updatedAt: at('2026-11-29T00:00:00.000Z'),
  });
  await em.flush();
  add(new EnrollmentToken(), {
    id: ids.token,
    deviceRef: ids.full,
    tokenHash: 'b'.repeat(64),
    state: 'CONSUMED',
    issuedAt: at('2026-02-01T00:00:00.000Z'),
    expiresAt: at('2026-02-02T00:00:00.000Z'),
    issuedBy: 'test',
  });
  await em.flush();
  for (const [index, status] of (['ACTIVE', 'REVOKED'] as const).entries()) {
    add(new DeviceCertificate(), {
      id: randomUUID(),
      deviceRef: ids.full,
      serialHex: `0${index}${'c'.repeat(38)}`,
      fingerprintSha256: `${index}${'d'.repeat(63)}`,
      spkiSha256: '2'.repeat(64),
      pem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
      notBefore: at('2026-02-01T00:00:00.250Z'),
      notAfter: at('2027-02-01T00:00:00.250Z'),
      status,
      issuedAt: at(`2026-02-0${index + 1}T00:00:00.250Z`),
      ...(status === 'REVOKED'
        ? { revokedAt: at('2026-03-01T10:00:00.777Z'), revocationReason: 4, enrollmentTokenId: ids.token }
        : {}),
    });
  }
  for (const id of ids.challenges) {
    add(new AttestationChallenge(), {
      id,
      deviceRef: ids.full,
      deviceId: 'plain-full',
      nonce: 'n'.repeat(64),
      issuedAt: at('2026-11-29T11:59:50.000Z'),
      deadlineAt: at('2026-11-29T12:00:20.000Z'),
      state: 'ANSWERED',
    });
  }
  await em.flush();
  const result = {
    deviceRef: ids.full,
    deviceId: 'plain-full',
    status: 'FAILED',
  };
  add(new AttestationResult(), {
    ...result,
    challengeId: ids.challenges[0],
    outcome: 'TIMEOUT',
    decidedAt: at('2026-11-29T11:59:51.000Z'),
  });
  add(new AttestationResult(), {
    ...result,
    challengeId: ids.challenges[1],
    siteId: 'plain-site',
    outcome: 'FAIL',
    reasons: ['NONCE_MISMATCH', 'FIRMWARE_MISMATCH'],
    nonceMatch: false,
    certChainValid: true,
    signatureValid: true,
    firmwareHash: `sha256:${'4'.repeat(64)}`,
    timestamp: at('2026-11-29T11:59:52.001Z'),
    receivedAt: at('2026-11-29T11:59:52.010Z'),
    latencyMs: 2010,
    riskScore: 87,
    decidedAt: at('2026-11-29T11:59:52.011Z'),
  });
  const factor = {
    deviceRef: ids.full,
    deviceId: 'plain-full',
    kind: 'IOC_HIT',
    severity: 'HIGH',
    source: 'siem',
    observedAt: at('2026-11-29T11:00:00.001Z'),
    recordedAt: at('2026-11-29T11:00:00.002Z'),
  } as const;
  add(new RiskFactor(), {
    ...factor,
    detail: 'indicator 10.0.0.1',
    weight: 0.35,
    contribution: 31.333333333333332,
    decays: true,
    dedupKey: 'ioc:10.0.0.1',
    bundleVersion: 12,
  });
  add(new RiskFactor(), { ...factor, detail: 'plain', weight: 1, contribution: 5, decays: false });
  add(new RiskFactor(), {
    ...factor,
    kind: 'FIRMWARE_DRIFT',
    detail: 'drift fixed',
    weight: 0.5,
    contribution: 12.5,
    decays: false,
    clearedAt: at('2026-11-29T11:30:00.999Z'),
    dedupKey: 'drift',
    bundleVersion: 11,
  });
  add(new Case(), {
    id: ids.fullCase,
    number: 9002,
    title: 'Attestation failed: plain-full',
    severity: 'HIGH',
    status: 'INVESTIGATING',
    source: 'ATTESTATION_FAILURE',
    deviceRef: ids.full,
    evidence: { reasons: ['NONCE_MISMATCH'], counter: '9007199254740993', score: 87.5, nested: { ok: null } },
    assignee: 'soc-analyst',
    openedAt: at('2026-11-29T11:59:52.011Z'),
    updatedAt: at('2026-11-29T11:59:53.000Z'),
    closedAt: at('2026-11-29T11:59:54.000Z'),
  });
  add(new Case(), {
    id: ids.sparseCase,
    number: 9001,
    title: 'Manual',
    severity: 'LOW',
    source: 'MANUAL',
    openedAt: at('2026-11-29T10:00:00.000Z'),
    updatedAt: at('2026-11-29T10:00:00.000Z'),
  });
  await em.flush();
  for (const caseRef of [ids.fullCase, ids.sparseCase]) {
    add(new CaseDevice(), { caseRef, deviceRef: ids.full, linkedAt: clock.now(), linkedBy: 'test' });
  }
  const caseEvent = { caseRef: ids.fullCase, actor: 'soc-analyst «Ü»' } as const;
  add(new CaseEvent(), { ...caseEvent, kind: 'OPENED', at: at('2026-11-29T11:59:52.011Z') });
  add(new CaseEvent(), {
    ...caseEvent,
    kind: 'EVIDENCE',
    at: at('2026-11-29T11:59:52.012Z'),
    body: 'Nonce mismatch',
    payload: { reasons: ['NONCE_MISMATCH'], counter: '9007199254740993', score: 87.5, nested: { ok: null } },
  });
  const auditEvent = {
    actor: 'system',
    action: 'case.opened',
    subject: `case:${ids.fullCase}`,
    prevHash: '0'.repeat(64),
    hash: 'e'.repeat(64),
  } as const;
  // Past 2^53: a bigint that a number would round.
  add(new AuditEvent(), {
    ...auditEvent,
    seq: '9007199254740993',
    occurredAt: at('2026-11-29T11:59:52.011Z'),
    details: { number: 9002, counter: '9007199254740993', list: [], nested: { ok: null, '«': 'ü' } },
  });
  add(new AuditEvent(), { ...auditEvent, seq: '1', occurredAt: at('2026-01-01T00:00:00.999Z'), details: {} });
  add(new Site(), {
    id: 'plain-site',
    name: 'Plant «Nord»',
    controllerId: 'plain-full',
    lastHeartbeatAt: at('2026-11-29T11:59:30.321Z'),
    lastHeartbeatChannel: 'mqtt',
    createdAt: at('2026-01-01T00:00:00.000Z'),
    updatedAt: at('2026-11-29T11:59:30.321Z'),
  });
  add(new Site(), {
    id: 'plain-quiet',
    name: 'Quiet',
    createdAt: at('2026-01-01T00:00:00.000Z'),
    updatedAt: at('2026-01-01T00:00:00.000Z'),
  });
  await em.flush();
});

afterAll(async () => {
  await orm?.close(true);
});

/** seqPage reads nothing of its context but the EntityManager. */
const seqContext = () => ({ em: orm.em.fork() }) as unknown as GraphQLContext;
const nodes = <T>(connection: { edges: ReadonlyArray<{ node: T }> }): T[] =>
  connection.edges.map((edge) => edge.node);

/**
 * Reads each plain row's entity with em.find (by primary key, in a fresh identity map) and
 * compares every property the metadata declares, and no other.
 */
async function expectHydratedEqual<T extends object>(
  entity: EntityClass<T>,
  rows: readonly T[],
  count: number,
): Promise<void> {
  expect(rows).toHaveLength(count);
  const meta = orm.getMetadata().get<T>(entity.name);
  const primary = meta.primaryKeys;
  for (const row of rows) {
    const key = Object.fromEntries(primary.map((name) => [name, row[name]]));
    const hydrated = await orm.em.fork().findOneOrFail(entity, key as never);
    expect(Object.keys(row).sort()).toEqual(meta.props.map((prop) => prop.name).sort());
    for (const prop of meta.props) {
      const name = prop.name as keyof T;
      expect(row[name], `${meta.className}.${prop.name}`).toEqual(hydrated[name]);
    }
  }
}

describe('plain rows equal what em.find hydrates', () => {
  it('Device, by device id and in listings', async () => {
    const em = orm.em.fork();
    await expectHydratedEqual(Device, await inventory.byDeviceIds(em, ['plain-full', 'plain-sparse']), 2);
    const listed = await inventory.list(
      em,
      { deviceIdPrefix: 'plain-' },
      { order: { field: 'RISK_SCORE', ascending: false }, limit: 10, inverted: false },
    );
    expect(listed.map((device) => device.deviceId)).toEqual(['plain-full', 'plain-sparse']);
    await expectHydratedEqual(Device, listed, 2);
  });

  it('DeviceCertificate, all of a device and its active one', async () => {
    const em = orm.em.fork();
    await expectHydratedEqual(DeviceCertificate, await certificatesOfDevices(em, [ids.full, ids.sparse]), 2);
    await expectHydratedEqual(DeviceCertificate, await activeCertificatesOf(em, [ids.full, ids.sparse]), 1);
  });

  it('AttestationResult, the latest of a device', async () => {
    const latest = await latestResultsOf(orm.em.fork(), [ids.full, ids.sparse]);
    expect(latest.map((result) => result.outcome)).toEqual(['FAIL']);
    await expectHydratedEqual(AttestationResult, latest, 1);
  });

  it('RiskFactor, the top factors of a device', async () => {
    await expectHydratedEqual(RiskFactor, await topFactorsOf(orm.em.fork(), [ids.full, ids.sparse], 3), 2);
  });

  it('Case, the cases of a device', async () => {
    const [ofFull, ofSparse] = await cases.casesOfDevices(orm.em.fork(), [ids.full, ids.sparse], undefined);
    expect(ofFull?.map((record) => record.number)).toEqual([9002, 9001]);
    expect(ofSparse).toEqual([]);
    await expectHydratedEqual(Case, ofFull ?? [], 2);
  });

  it('Site, by id', async () => {
    await expectHydratedEqual(Site, await sites.byIds(orm.em.fork(), ['plain-site', 'plain-quiet']), 2);
  });

  it('AuditEvent, a page of the audit trail', async () => {
    const page = await seqPage(seqContext(), { first: 10 }, AuditEvent, 'audit', {}, 'oldest-first');
    expect(nodes(page).map((event) => event.seq)).toEqual(['1', '9007199254740993']);
    await expectHydratedEqual(AuditEvent, nodes(page), 2);
    expect(await page.totalCount()).toBe(2);
  });

  it('CaseEvent, a page of a case timeline', async () => {
    const timeline = (args: DefaultConnectionArguments, caseRef: string = ids.fullCase) =>
      seqPage(seqContext(), args, CaseEvent, 'case-event', { caseRef }, 'oldest-first');
    const page = await timeline({ first: 10 });
    expect(nodes(page).map((event) => event.kind)).toEqual(['OPENED', 'EVIDENCE']);
    await expectHydratedEqual(CaseEvent, nodes(page), 2);
    expect(await page.totalCount()).toBe(2);
    const after = await timeline({ first: 10, after: page.edges[0]!.cursor });
    expect(nodes(after).map((event) => event.kind)).toEqual(['EVIDENCE']);
    const before = await timeline({ last: 10, before: page.edges[1]!.cursor });
    expect(nodes(before).map((event) => event.kind)).toEqual(['OPENED']);
    expect(nodes(await timeline({ first: 10 }, ids.sparseCase))).toEqual([]);
  });

  it('AttestationResult and RiskFactor, pages filtered by equality and by a list', async () => {
    const results = (where: SeqWhere<AttestationResult>) =>
      seqPage(seqContext(), { first: 10 }, AttestationResult, 'attestation', where, 'oldest-first');
    const all = await results({ deviceId: 'plain-full', outcome: ['TIMEOUT', 'FAIL'] });
    expect(nodes(all).map((result) => result.outcome)).toEqual(['TIMEOUT', 'FAIL']);
    await expectHydratedEqual(AttestationResult, nodes(all), 2);
    expect(await all.totalCount()).toBe(2);
    const atSite = await results({ siteId: 'plain-site', outcome: ['FAIL'] });
    expect(nodes(atSite).map((result) => result.outcome)).toEqual(['FAIL']);
    expect(await atSite.totalCount()).toBe(1);
    expect(nodes(await results({ outcome: [] }))).toEqual([]);

    const factors = (args: DefaultConnectionArguments) =>
      seqPage(seqContext(), args, RiskFactor, 'risk', { deviceRef: ids.full }, 'newest-first');
    const newest = await factors({ first: 2 });
    expect(nodes(newest).map((factor) => factor.kind)).toEqual(['FIRMWARE_DRIFT', 'IOC_HIT']);
    expect(newest.pageInfo.hasNextPage).toBe(true);
    await expectHydratedEqual(RiskFactor, nodes(newest), 2);
    const older = await factors({ first: 2, after: newest.pageInfo.endCursor });
    expect(nodes(older).map((factor) => factor.detail)).toEqual(['indicator 10.0.0.1']);
    const oldest = await factors({ last: 1 });
    expect(nodes(oldest).map((factor) => factor.detail)).toEqual(['indicator 10.0.0.1']);
    expect(await oldest.totalCount()).toBe(3);
  });
});

describe('plainRows and selectList', () => {
  const tables = [
    [Device, 'device', 2],
    [DeviceCertificate, 'device_certificate', 2],
    [AttestationResult, 'attestation_result', 2],
    [RiskFactor, 'risk_factor', 3],
    [Case, 'case_record', 2],
    [Site, 'site', 2],
    [AuditEvent, 'audit_event', 2],
    [CaseEvent, 'case_event', 2],
  ] as const;

  it.each(tables)('read every row of %o as em.find hydrates it', async (entity, table, count) => {
    const em = orm.em.fork();
    const rows = await plainRows<object>(
      em,
      entity,
      `select ${selectList(em, entity, 't')} from "${table}" t`,
    );
    await expectHydratedEqual<object>(entity, rows, count);
  });
});
