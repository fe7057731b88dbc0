import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../src/audit/audit.service.js';
import { generateCsr, post } from '../../../bench/support.js';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let agent: https.Agent;
const prefix = `stmt-${randomBytes(2).toString('hex')}`;
const DEVICES = 4;
const replacedDevice = `${prefix}-r`;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  // Only the enrollment's own statements may be counted: the background passes stop here.
  await service.scheduler.stop();
  await service.riskScheduler.stop();
  agent = new https.Agent({ keepAlive: true, ca: service.services.ca.rootPem });
  await service.services.inventory.import(
    service.services.database.orm.em.fork(),
    [...Array.from({ length: DEVICES }, (_, index) => `${prefix}-${index}`), replacedDevice].map((id) => ({
      device_id: id,
      device_type: 'PLC',
    })),
    'test',
  );
});

afterAll(async () => {
  agent?.destroy();
  await service?.close();
});

/** Counts every statement the service sends (BEGIN and COMMIT included) while `work` runs. */
async function statementsDuring<T>(work: () => Promise<T>): Promise<{ statements: number; value: T }> {
  const knex = service.services.database.orm.em.getConnection().getKnex();
  let statements = 0;
  const count = () => (statements += 1);
  knex.on('query', count);
  try {
    const value = await work();
    return { statements, value };
  } finally {
    knex.off('query', count);
  }
}

const requestOtt = (deviceId: string) =>
  post(
    agent,
    new URL('/api/v1/cps/ott/request', service.app.urls.https),
    { 'content-type': 'application/json' },
    JSON.stringify({
      device_id: deviceId,
      cdi_commitment: `sha256:${randomBytes(32).toString('hex')}`,
      device_type: 'PLC',
      firmware_version: '1.0.0',
    }),
  );

const simpleEnroll = (ott: string, csr: string) =>
  post(
    agent,
    new URL('/.well-known/est/simpleenroll', service.app.urls.https),
    { 'content-type': 'application/pkcs10', authorization: `Bearer ${ott}` },
    csr,
  );

/** OTT request then EST simpleenroll over HTTPS, as the benchmark's devices do. */
async function enroll(deviceId: string): Promise<{ ott: number; est: number }> {
  const csr = await generateCsr(deviceId);
  const requested = await statementsDuring(() => requestOtt(deviceId));
  expect(requested.value.status, requested.value.body).toBe(201);
  const { ott } = JSON.parse(requested.value.body) as { ott: string };
  const enrolled = await statementsDuring(() => simpleEnroll(ott, csr));
  expect(enrolled.value.status, enrolled.value.body).toBe(200);
  return { ott: requested.statements, est: enrolled.statements };
}

describe('an enrollment (OTT request + simpleenroll)', () => {
  it('costs a fixed, small number of SQL statements, and the audit chain still verifies', async () => {
    const counts = [];
    for (let index = 0; index < DEVICES; index += 1) counts.push(await enroll(`${prefix}-${index}`));
    // The first one also pays for warming caches; every later one costs the same.
    const steady = counts.slice(1);
    expect(new Set(steady.map((count) => `${count.ott}/${count.est}`)).size).toBe(1);
    const [{ ott, est }] = steady as [{ ott: number; est: number }];
    console.log(`statements per enrollment: OTT request ${ott}, simpleenroll ${est}, total ${ott + est}`);
    expect(ott).toBeLessThanOrEqual(3);
    expect(est).toBeLessThanOrEqual(2);

    const chain = await verifyAuditChain(service.services.database.orm.em.fork());
    expect(chain).toMatchObject({ ok: true });
    expect(chain.checked).toBeGreaterThanOrEqual(DEVICES * 2);
  });

  it('replaces the outstanding token with a new one, which alone enrolls, once', async () => {
    const tokens = [];
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const requested = await requestOtt(replacedDevice);
      expect(requested.status).toBe(201);
      tokens.push((JSON.parse(requested.body) as { ott: string }).ott);
    }
    const csr = await generateCsr(replacedDevice);
    const stale = await simpleEnroll(tokens[0]!, csr);
    expect(stale.status).toBe(401);
    expect((JSON.parse(stale.body) as { type: string }).type).toBe('urn:fleetproof:problem:token-replaced');
    expect((await simpleEnroll(tokens[1]!, csr)).status).toBe(200);
    // The same key again within the token's life is the idempotent retry; another key is refused.
    expect((await simpleEnroll(tokens[1]!, csr)).status).toBe(200);
    const other = await simpleEnroll(tokens[1]!, await generateCsr(replacedDevice));
    expect((JSON.parse(other.body) as { type: string }).type).toBe('urn:fleetproof:problem:token-spent');
  });
});
