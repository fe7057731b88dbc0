import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/shared/clock.js';
import { curl } from '../../support/curl.js';
import { openssl } from '../../support/openssl.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let work: string;
let facilities: string;
let operator: string;
let rootPem: string;
let est: string;
const clock = new ManualClock();

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock });
  work = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-est-'));
  facilities = await service.token('facilities');
  operator = await service.token('operator');
  rootPem = path.join(service.dataDir, 'pki', 'root-ca.pem');
  est = `${service.app.urls.https}/.well-known/est`;
});

afterAll(async () => {
  await service?.close();
  await rm(work, { recursive: true, force: true });
});

const commitmentOf = (seed: string) => `sha256:${createHash('sha256').update(seed).digest('hex')}`;

async function register(deviceId: string, extra: Record<string, unknown> = {}) {
  const result = await curl([
    '-X',
    'POST',
    `${service.app.urls.http}/api/v1/cps/devices`,
    '-H',
    `Authorization: Bearer ${facilities}`,
    '-H',
    'Content-Type: application/json',
    '--data',
    JSON.stringify({ device_id: deviceId, device_type: 'PLC', criticality: 'critical', ...extra }),
  ]);
  expect([200, 201], result.stdout).toContain(result.status);
}

async function requestOtt(deviceId: string, commitment = commitmentOf(deviceId)): Promise<string> {
  const result = await curl([
    '-X',
    'POST',
    `${service.app.urls.http}/api/v1/cps/ott/request`,
    '-H',
    'Content-Type: application/json',
    '--data',
    JSON.stringify({
      device_id: deviceId,
      cdi_commitment: commitment,
      device_type: 'PLC',
      firmware_version: '1.0.0',
    }),
  ]);
  expect(result.status, result.stdout).toBe(201);
  const body = JSON.parse(result.stdout) as { ott: string; expires_at: string };
  expect(new Date(body.expires_at).getTime() - clock.now().getTime()).toBe(60_000);
  return body.ott;
}

/** `openssl req` makes a key and a CSR; returns file paths (CSR as base64 DER, RFC 7030 4.2.1). */
async function makeCsr(
  name: string,
  cn: string,
  keyArgs: string[],
): Promise<{ key: string; csr: string; der: string }> {
  const key = path.join(work, `${name}.key`);
  const der = path.join(work, `${name}.csr.der`);
  const csr = path.join(work, `${name}.csr.b64`);
  const made = await openssl([
    'req',
    '-new',
    ...keyArgs,
    '-nodes',
    '-keyout',
    key,
    '-subj',
    `/CN=${cn}`,
    '-outform',
    'DER',
    '-out',
    der,
  ]);
  expect(made.code, made.stderr).toBe(0);
  expect((await openssl(['base64', '-in', der, '-out', csr])).code).toBe(0);
  return { key, csr, der };
}

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

async function simpleenroll(csrFile: string, auth: string[], contentType = 'application/pkcs10') {
  const out = path.join(work, `resp-${randomBytes(4).toString('hex')}.b64`);
  const result = await curl([
    '--cacert',
    rootPem,
    '-X',
    'POST',
    `${est}/simpleenroll`,
    '-H',
    `Content-Type: ${contentType}`,
    ...auth,
    '--data-binary',
    `@${csrFile}`,
    '-o',
    out,
    '-D',
    '-',
  ]);
  return { status: result.status, headers: result.stdout, bodyFile: out };
}

/** base64 -> DER -> `openssl pkcs7 -print_certs`: what an EST client does with the response. */
async function certificateFrom(bodyFile: string): Promise<string> {
  const der = `${bodyFile}.der`;
  expect((await openssl(['base64', '-d', '-in', bodyFile, '-out', der])).code).toBe(0);
  const pem = `${bodyFile}.pem`;
  const printed = await openssl(['pkcs7', '-inform', 'DER', '-in', der, '-print_certs', '-out', pem]);
  expect(printed.code, printed.stderr).toBe(0);
  return pem;
}

async function problemOf(bodyFile: string): Promise<{ type: string; status: number }> {
  return JSON.parse(await readFile(bodyFile, 'utf8')) as { type: string; status: number };
}

async function sql<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: service.config.databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const certificateCount = async (deviceId: string) =>
  Number(
    (
      await sql<{ n: string }>(
        'select count(*) as n from device_certificate c join device d on d.id = c.device_ref where d.device_id = $1',
        [deviceId],
      )
    )[0]!.n,
  );

const lastAudit = async (action: string, subject: string) =>
  (
    await sql<{ details: { reason?: string } }>(
      'select details from audit_event where action = $1 and subject = $2 order by seq desc limit 1',
      [action, subject],
    )
  )[0]?.details;

describe('EST with OpenSSL and curl', () => {
  it('serves the CA certificates as a certs-only PKCS#7 that OpenSSL reads', async () => {
    const out = path.join(work, 'cacerts.b64');
    const result = await curl(['--cacert', rootPem, `${est}/cacerts`, '-o', out, '-D', '-']);
    expect(result.status).toBe(200);
    expect(result.stdout.toLowerCase()).toContain('content-type: application/pkcs7-mime');
    const pem = await certificateFrom(out);
    const subjects = (await readFile(pem, 'utf8')).match(/-----BEGIN CERTIFICATE-----/g);
    expect(subjects).toHaveLength(2);
  });

  it.each([
    ['P-256', P256],
    ['Ed25519', ['-newkey', 'ed25519']],
    ['RSA-3072', ['-newkey', 'rsa:3072']],
  ])(
    'enrolls a %s device end to end: register, OTT, CSR, simpleenroll, verify, approve',
    async (label, keyArgs) => {
      const deviceId = `plc-${label.toLowerCase()}-${randomBytes(3).toString('hex')}`;
      await register(deviceId, { expected_cdi_commitment: commitmentOf(deviceId) });
      const ott = await requestOtt(deviceId);
      const { csr } = await makeCsr(deviceId, deviceId, keyArgs);
      const response = await simpleenroll(csr, ['-H', `Authorization: Bearer ${ott}`]);
      expect(response.status, await readFile(response.bodyFile, 'utf8')).toBe(200);
      expect(response.headers.toLowerCase()).toContain(
        'content-type: application/pkcs7-mime; smime-type=certs-only',
      );
      expect(response.headers.toLowerCase()).toContain('content-transfer-encoding: base64');
      const certificate = await certificateFrom(response.bodyFile);

      const cacerts = path.join(work, 'cacerts.b64');
      await curl(['--cacert', rootPem, `${est}/cacerts`, '-o', cacerts]);
      const chain = await certificateFrom(cacerts);
      const verified = await openssl(['verify', '-CAfile', rootPem, '-untrusted', chain, certificate]);
      expect(verified.stdout, verified.stderr).toContain(': OK');

      const text = (
        await openssl([
          'x509',
          '-in',
          certificate,
          '-noout',
          '-subject',
          '-ext',
          'subjectAltName,extendedKeyUsage',
        ])
      ).stdout;
      expect(text).toContain(`CN = ${deviceId}`);
      expect(text).toContain(`URI:urn:dice:cdi:${commitmentOf(deviceId)}`);
      expect(text).toContain('TLS Web Client Authentication');

      const before = await graphql<{ device: { attestationStatus: string; enrollmentState: string } }>(
        service.app.urls.graphql,
        operator,
        `{ device(deviceId: "${deviceId}") { attestationStatus enrollmentState } }`,
      );
      expect(before.body.data?.device).toEqual({ attestationStatus: 'PENDING', enrollmentState: 'ENROLLED' });
      const approved = await graphql<{ approveDevice: { __typename: string } }>(
        service.app.urls.graphql,
        operator,
        `mutation { approveDevice(deviceId: "${deviceId}") { __typename } }`,
      );
      expect(approved.body.data?.approveDevice.__typename).not.toMatch(/Error|Transition|NotFound|Conflict/);
      const after = await graphql<{ device: { attestationStatus: string } }>(
        service.app.urls.graphql,
        operator,
        `{ device(deviceId: "${deviceId}") { attestationStatus } }`,
      );
      expect(after.body.data?.device.attestationStatus).toBe('VERIFIED');
    },
  );

  it('accepts HTTP Basic (user = device id, password = OTT) and a PEM CSR, as stock EST clients send', async () => {
    const deviceId = `basic-${randomBytes(3).toString('hex')}`;
    await register(deviceId);
    const ott = await requestOtt(deviceId);
    const { key } = await makeCsr(`${deviceId}-pem`, deviceId, P256);
    const pemCsr = path.join(work, `${deviceId}.csr.pem`);
    expect(
      (await openssl(['req', '-new', '-key', key, '-subj', `/CN=${deviceId}`, '-out', pemCsr])).code,
    ).toBe(0);
    const response = await simpleenroll(pemCsr, ['-u', `${deviceId}:${ott}`]);
    expect(response.status, await readFile(response.bodyFile, 'utf8')).toBe(200);
    // The runbook's path behaves the same.
    const second = `alias-${randomBytes(3).toString('hex')}`;
    await register(second);
    const ott2 = await requestOtt(second);
    const { csr } = await makeCsr(second, second, P256);
    const out = path.join(work, `${second}.resp`);
    const alias = await curl([
      '--cacert',
      rootPem,
      '-X',
      'POST',
      `${service.app.urls.https}/api/v1/cps/est/enroll`,
      '-H',
      'Content-Type: application/pkcs10',
      '-H',
      `Authorization: Bearer ${ott2}`,
      '--data-binary',
      `@${csr}`,
      '-o',
      out,
    ]);
    expect(alias.status).toBe(200);
    await certificateFrom(out);
  });
});

describe('EST refusals', () => {
  async function expectRefusal(
    deviceId: string,
    response: { status: number; bodyFile: string },
    status: number,
    reason: string,
  ) {
    expect(response.status).toBe(status);
    const body = await problemOf(response.bodyFile);
    expect(body.type).toBe(`urn:fleetproof:problem:${reason}`);
    expect(body.status).toBe(status);
    expect(await certificateCount(deviceId)).toBe(0);
  }

  it('refuses each bad request with its status, problem type, no certificate and an audit event', async () => {
    const deviceId = `bad-${randomBytes(3).toString('hex')}`;
    await register(deviceId);
    const { csr } = await makeCsr(deviceId, deviceId, P256);

    await expectRefusal(deviceId, await simpleenroll(csr, []), 401, 'token-missing');
    await expectRefusal(
      deviceId,
      await simpleenroll(csr, ['-H', 'Authorization: Bearer not-a-token']),
      401,
      'token-unknown',
    );

    const ott = await requestOtt(deviceId);
    const auth = ['-H', `Authorization: Bearer ${ott}`];
    await expectRefusal(deviceId, await simpleenroll(csr, auth, 'text/plain'), 415, 'unsupported-media-type');

    const big = path.join(work, 'big.b64');
    await writeFile(big, 'A'.repeat(65 * 1024));
    await expectRefusal(deviceId, await simpleenroll(big, auth), 413, 'payload-too-large');

    const garbage = path.join(work, 'garbage.b64');
    await writeFile(garbage, '!!!! not base64 at all !!!!');
    await expectRefusal(deviceId, await simpleenroll(garbage, auth), 400, 'csr-undecodable');
    expect((await lastAudit('enrollment.refused', `device:${deviceId}`))?.reason).toBe('csr-undecodable');

    const tampered = path.join(work, 'tampered.b64');
    const der = await readFile(path.join(work, `${deviceId}.csr.der`));
    der.writeUInt8(der.readUInt8(der.length - 5) ^ 0x01, der.length - 5); // inside the signature
    await writeFile(tampered, der.toString('base64'));
    await expectRefusal(deviceId, await simpleenroll(tampered, auth), 400, 'csr-bad-signature');

    const other = await makeCsr(`${deviceId}-other`, 'someone-else', P256);
    await expectRefusal(deviceId, await simpleenroll(other.csr, auth), 400, 'csr-cn-mismatch');

    const weak = await makeCsr(`${deviceId}-weak`, deviceId, ['-newkey', 'rsa:1024']);
    await expectRefusal(deviceId, await simpleenroll(weak.csr, auth), 400, 'csr-weak-key');

    const plain = await curl([
      '-X',
      'POST',
      `${service.app.urls.http}/.well-known/est/simpleenroll`,
      '-H',
      'Content-Type: application/pkcs10',
      ...auth,
      '--data-binary',
      `@${csr}`,
    ]);
    expect(plain.status).toBe(403);
    expect((JSON.parse(plain.stdout) as { type: string }).type).toBe('urn:fleetproof:problem:https-required');
    expect(await certificateCount(deviceId)).toBe(0);
  });

  it('refuses a key other than the one the chip vendor listed (403)', async () => {
    const deviceId = `pinned-${randomBytes(3).toString('hex')}`;
    const listed = await makeCsr(`${deviceId}-listed`, deviceId, P256);
    const spki = await openssl(['pkey', '-in', listed.key, '-pubout', '-outform', 'DER']);
    const spkiSha256 = createHash('sha256').update(Buffer.from(spki.stdout, 'latin1')).digest('hex');
    await register(deviceId, { expected_spki_sha256: spkiSha256 });
    const clone = await makeCsr(`${deviceId}-clone`, deviceId, P256);
    const ott = await requestOtt(deviceId);
    await expectRefusal(
      deviceId,
      await simpleenroll(clone.csr, ['-H', `Authorization: Bearer ${ott}`]),
      403,
      'key-not-registered',
    );
    expect((await lastAudit('enrollment.refused', `device:${deviceId}`))?.reason).toBe('key-not-registered');
    const genuine = await simpleenroll(listed.csr, ['-H', `Authorization: Bearer ${ott}`]);
    expect(genuine.status).toBe(200);
  });
});

describe('one-time tokens', () => {
  it('returns the same certificate to a retry with the same key, and refuses any other reuse', async () => {
    const deviceId = `retry-${randomBytes(3).toString('hex')}`;
    await register(deviceId);
    const ott = await requestOtt(deviceId);
    const { csr } = await makeCsr(deviceId, deviceId, P256);
    const auth = ['-H', `Authorization: Bearer ${ott}`];
    const first = await certificateFrom((await simpleenroll(csr, auth)).bodyFile);
    const retry = await simpleenroll(csr, auth);
    expect(retry.status).toBe(200);
    expect(await readFile(await certificateFrom(retry.bodyFile), 'utf8')).toBe(await readFile(first, 'utf8'));
    expect(await certificateCount(deviceId)).toBe(1);

    const otherKey = await makeCsr(`${deviceId}-2`, deviceId, P256);
    const replay = await simpleenroll(otherKey.csr, auth);
    expect(replay.status).toBe(401);
    expect((await problemOf(replay.bodyFile)).type).toBe('urn:fleetproof:problem:token-spent');
    expect(await certificateCount(deviceId)).toBe(1);
  });

  it('expires after 60 seconds (injected clock)', async () => {
    const deviceId = `expiry-${randomBytes(3).toString('hex')}`;
    await register(deviceId);
    const ott = await requestOtt(deviceId);
    const { csr } = await makeCsr(deviceId, deviceId, P256);
    clock.advance(60_001);
    const response = await simpleenroll(csr, ['-H', `Authorization: Bearer ${ott}`]);
    expect(response.status).toBe(401);
    expect((await problemOf(response.bodyFile)).type).toBe('urn:fleetproof:problem:token-expired');
    expect(await certificateCount(deviceId)).toBe(0);
  });

  it("does not let device A's token enroll device B", async () => {
    const a = `dev-a-${randomBytes(3).toString('hex')}`;
    const b = `dev-b-${randomBytes(3).toString('hex')}`;
    await register(a);
    await register(b);
    const ottA = await requestOtt(a);
    const csrB = await makeCsr(b, b, P256);
    const asBearer = await simpleenroll(csrB.csr, ['-H', `Authorization: Bearer ${ottA}`]);
    expect(asBearer.status).toBe(400);
    expect((await problemOf(asBearer.bodyFile)).type).toBe('urn:fleetproof:problem:csr-cn-mismatch');
    const asBasic = await simpleenroll(csrB.csr, ['-u', `${b}:${ottA}`]);
    expect(asBasic.status).toBe(401);
    expect((await problemOf(asBasic.bodyFile)).type).toBe('urn:fleetproof:problem:token-device-mismatch');
    expect(await certificateCount(a)).toBe(0);
    expect(await certificateCount(b)).toBe(0);
  });

  it('refuses a token for a device that is not in the inventory or whose commitment differs (403, audited)', async () => {
    const unknown = await curl([
      '-X',
      'POST',
      `${service.app.urls.http}/api/v1/cps/ott/request`,
      '-H',
      'Content-Type: application/json',
      '--data',
      JSON.stringify({
        device_id: 'ghost-1',
        cdi_commitment: commitmentOf('x'),
        device_type: 'PLC',
        firmware_version: '1',
      }),
    ]);
    expect(unknown.status).toBe(403);
    expect((JSON.parse(unknown.stdout) as { type: string }).type).toBe(
      'urn:fleetproof:problem:device-not-registered',
    );
    expect((await lastAudit('ott.refused', 'device:ghost-1'))?.reason).toBe('device-not-registered');

    const deviceId = `committed-${randomBytes(3).toString('hex')}`;
    await register(deviceId, { expected_cdi_commitment: commitmentOf('genuine') });
    const wrong = await curl([
      '-X',
      'POST',
      `${service.app.urls.http}/api/v1/cps/ott/request`,
      '-H',
      'Content-Type: application/json',
      '--data',
      JSON.stringify({
        device_id: deviceId,
        cdi_commitment: commitmentOf('forged'),
        device_type: 'PLC',
        firmware_version: '1',
      }),
    ]);
    expect(wrong.status).toBe(403);
    expect((JSON.parse(wrong.stdout) as { type: string }).type).toBe(
      'urn:fleetproof:problem:commitment-mismatch',
    );
  });
});

describe('re-enrollment and revocation', () => {
  it('re-enrolls with the current certificate, refuses revoked and foreign ones, and lists revoked serials on the CRL', async () => {
    const deviceId = `reenroll-${randomBytes(3).toString('hex')}`;
    await register(deviceId);
    const ott = await requestOtt(deviceId);
    const first = await makeCsr(deviceId, deviceId, P256);
    const certificate = await certificateFrom(
      (await simpleenroll(first.csr, ['-H', `Authorization: Bearer ${ott}`])).bodyFile,
    );

    const rekey = await makeCsr(`${deviceId}-rekey`, deviceId, P256);
    const reenroll = async (cert: string, key: string, csr: string) => {
      const out = path.join(work, `re-${randomBytes(4).toString('hex')}`);
      const result = await curl([
        '--cacert',
        rootPem,
        '--cert',
        cert,
        '--key',
        key,
        '-X',
        'POST',
        `${est}/simplereenroll`,
        '-H',
        'Content-Type: application/pkcs10',
        '--data-binary',
        `@${csr}`,
        '-o',
        out,
      ]);
      return { status: result.status, bodyFile: out };
    };
    const renewed = await reenroll(certificate, first.key, rekey.csr);
    expect(renewed.status, await readFile(renewed.bodyFile, 'utf8')).toBe(200);
    const newCertificate = await certificateFrom(renewed.bodyFile);
    const statuses = await sql<{ status: string }>(
      'select c.status from device_certificate c join device d on d.id = c.device_ref where d.device_id = $1 order by c.issued_at',
      [deviceId],
    );
    expect(statuses.map((row) => row.status)).toEqual(['SUPERSEDED', 'ACTIVE']);

    // The superseded certificate no longer renews.
    const stale = await reenroll(certificate, first.key, rekey.csr);
    expect(stale.status).toBe(403);

    // A certificate from another CA is not a credential here.
    const foreignKey = path.join(work, 'foreign.key');
    const foreignCert = path.join(work, 'foreign.pem');
    await openssl([
      'req',
      '-x509',
      ...P256,
      '-nodes',
      '-keyout',
      foreignKey,
      '-out',
      foreignCert,
      '-subj',
      `/CN=${deviceId}`,
      '-days',
      '1',
    ]);
    const foreign = await reenroll(foreignCert, foreignKey, rekey.csr);
    expect(foreign.status).toBe(401);

    // A live MQTT session with the current certificate...
    const connect = async () =>
      mqtt.connectAsync(service.app.urls.mqtt, {
        clientId: deviceId,
        key: await readFile(rekey.key),
        cert: await readFile(newCertificate),
        ca: await readFile(rootPem),
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      });
    const session = await connect();
    const closed = new Promise<boolean>((resolve) => {
      session.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 5_000);
    });

    const revoked = await graphql<{ revokeDevice: { __typename: string } }>(
      service.app.urls.graphql,
      operator,
      `mutation { revokeDevice(deviceId: "${deviceId}", reason: "decommissioned by test", reasonCode: KEY_COMPROMISE) { __typename } }`,
    );
    expect(revoked.body.errors).toBeUndefined();
    // ...ends within five seconds of the mutation returning, and no new one is accepted.
    expect(await closed).toBe(true);
    await expect(connect()).rejects.toThrow();
    const afterRevocation = await reenroll(newCertificate, rekey.key, rekey.csr);
    expect(afterRevocation.status).toBe(403);

    const crlFile = path.join(work, `${deviceId}.crl`);
    const crl = await curl([`${service.app.urls.http}/api/v1/cps/crl`, '-o', crlFile]);
    expect(crl.status).toBe(200);
    const crlText = (await openssl(['crl', '-inform', 'DER', '-in', crlFile, '-noout', '-text'])).stdout;
    const serial = (await openssl(['x509', '-in', newCertificate, '-noout', '-serial'])).stdout
      .trim()
      .split('=')[1]!;
    expect(crlText.toUpperCase()).toContain(serial.toUpperCase());
    expect(crlText).toContain('Key Compromise');
  });
});
