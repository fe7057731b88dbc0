import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl } from '../../support/curl.js';
import { openssl } from '../../support/openssl.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let work: string;
let rootPem: string;

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

interface Issued {
  cert: string;
  key: string;
}

async function run(args: string[]): Promise<void> {
  const result = await openssl(args);
  expect(result.code, `${args.join(' ')}\n${result.stderr}`).toBe(0);
}

/** A manufacturer CA made with the openssl CLI: a self-signed root, or a sub-CA signed by `issuer`. */
async function makeCa(name: string, issuer?: Issued): Promise<Issued> {
  const key = path.join(work, `${name}.key`);
  const cert = path.join(work, `${name}.pem`);
  if (!issuer) {
    await run([
      'req',
      '-x509',
      ...P256,
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-subj',
      `/O=Acme Devices/CN=${name}`,
      '-days',
      '30',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { cert, key };
  }
  return sign(name, issuer, ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** An IEEE 802.1AR-style IDevID leaf whose CN is the device id. */
function makeIdevid(deviceId: string, issuer: Issued): Promise<Issued> {
  return sign(deviceId, issuer, ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature']);
}

async function sign(name: string, issuer: Issued, extensions: string[]): Promise<Issued> {
  const key = path.join(work, `${name}.key`);
  const csr = path.join(work, `${name}.csr`);
  const cert = path.join(work, `${name}.pem`);
  const ext = path.join(work, `${name}.ext`);
  await writeFile(ext, extensions.join('\n') + '\n');
  await run([
    'req',
    '-new',
    ...P256,
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    `/O=Acme Devices/CN=${name}`,
  ]);
  await run([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    issuer.cert,
    '-CAkey',
    issuer.key,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '30',
    '-extfile',
    ext,
  ]);
  return { cert, key };
}

const fingerprint = async (certFile: string) =>
  (await openssl(['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256'])).stdout
    .trim()
    .split('=')[1]!;

/** simpleenroll with no token: the IDevID chain (leaf + intermediates) is the TLS client certificate. */
async function enrollWithIdevid(deviceId: string, idevid: Issued, intermediates: Issued[]) {
  const chainFile = path.join(work, `${deviceId}-chain.pem`);
  await writeFile(
    chainFile,
    (await Promise.all([idevid, ...intermediates].map((c) => readFile(c.cert, 'utf8')))).join(''),
  );
  const csrKey = path.join(work, `${deviceId}-op.key`);
  const der = path.join(work, `${deviceId}-op.csr.der`);
  const csr = path.join(work, `${deviceId}-op.csr.b64`);
  await run([
    'req',
    '-new',
    ...P256,
    '-nodes',
    '-keyout',
    csrKey,
    '-subj',
    `/CN=${deviceId}`,
    '-outform',
    'DER',
    '-out',
    der,
    '-addext',
    `subjectAltName=URI:urn:dice:cdi:sha256:${'ab'.repeat(32)}`,
  ]);
  await run(['base64', '-in', der, '-out', csr]);
  const out = path.join(work, `${deviceId}.resp`);
  const result = await curl([
    '--cacert',
    rootPem,
    '--cert',
    chainFile,
    '--key',
    idevid.key,
    '-X',
    'POST',
    `${service.app.urls.https}/.well-known/est/simpleenroll`,
    '-H',
    'Content-Type: application/pkcs10',
    '--data-binary',
    `@${csr}`,
    '-o',
    out,
  ]);
  const body = await readFile(out, 'utf8');
  return {
    status: result.status,
    type: result.status === 200 ? undefined : (JSON.parse(body) as { type: string }).type,
  };
}

let root1: Issued;
let intA: Issued;
let intC: Issued;
let root2: Issued;
let intB: Issued;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  work = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-groups-'));
  rootPem = path.join(service.dataDir, 'pki', 'root-ca.pem');
  root1 = await makeCa('acme-root-1');
  intA = await makeCa('acme-plc-line-a', root1);
  intC = await makeCa('acme-unlisted-line-c', root1);
  root2 = await makeCa('acme-root-2');
  intB = await makeCa('acme-cam-line-b', root2);
  const em = () => service.services.database.orm.em.fork();
  await service.services.enrollmentGroups.create(
    em(),
    {
      name: 'PLC line A',
      chainPems: [await readFile(root1.cert, 'utf8'), await readFile(intA.cert, 'utf8')],
      representativeFingerprint: await fingerprint(intA.cert),
      denyCommonNames: ['plc-recalled-1'],
      defaultDeviceType: 'PLC',
      defaultCriticality: 'critical',
      defaultSiteId: 'plant-7',
    },
    'test',
  );
  await service.services.enrollmentGroups.create(
    em(),
    {
      name: 'Camera root 2',
      chainPems: [await readFile(root2.cert, 'utf8')],
      representativeFingerprint: await fingerprint(root2.cert),
      allowCommonNames: ['cam-allowed-1'],
      defaultDeviceType: 'IP_CAM',
      autoApprove: true,
    },
    'test',
  );
});

afterAll(async () => {
  await service?.close();
  await rm(work, { recursive: true, force: true });
});

async function deviceRow(deviceId: string) {
  return service.services.inventory.get(service.services.database.orm.em.fork(), deviceId);
}

describe('enrollment groups (manufacturer certificates)', () => {
  it('matches the group of the nearest intermediate and registers the device with its defaults', async () => {
    const deviceId = `plc-a-${randomBytes(3).toString('hex')}`;
    const result = await enrollWithIdevid(deviceId, await makeIdevid(deviceId, intA), [intA]);
    expect(result).toEqual({ status: 200, type: undefined });
    const device = await deviceRow(deviceId);
    expect(device).toMatchObject({
      type: 'PLC',
      criticality: 'critical',
      siteId: 'plant-7',
      enrollmentState: 'ENROLLED',
      attestationStatus: 'PENDING',
    });
  });

  it('moves towards the root when the nearest intermediate is no group (matched higher up), and auto-approves', async () => {
    const deviceId = 'cam-allowed-1';
    const result = await enrollWithIdevid(deviceId, await makeIdevid(deviceId, intB), [intB]);
    expect(result.status).toBe(200);
    expect(await deviceRow(deviceId)).toMatchObject({
      type: 'IP_CAM',
      enrollmentState: 'APPROVED',
      attestationStatus: 'VERIFIED',
    });
  });

  it('refuses a trusted chain that reaches no group representative', async () => {
    const deviceId = `plc-c-${randomBytes(3).toString('hex')}`;
    const result = await enrollWithIdevid(deviceId, await makeIdevid(deviceId, intC), [intC]);
    expect(result).toEqual({ status: 403, type: 'urn:fleetproof:problem:no-matching-group' });
  });

  it('lets the deny-list win and enforces the allow-list', async () => {
    const denied = await enrollWithIdevid('plc-recalled-1', await makeIdevid('plc-recalled-1', intA), [intA]);
    expect(denied).toEqual({ status: 403, type: 'urn:fleetproof:problem:denied-by-group' });
    const notAllowed = await enrollWithIdevid('cam-other-9', await makeIdevid('cam-other-9', intB), [intB]);
    expect(notAllowed).toEqual({ status: 403, type: 'urn:fleetproof:problem:not-allowed-by-group' });
  });

  it('refuses a chain that is not presented up to a group certificate, or comes from another manufacturer', async () => {
    const deviceId = `plc-short-${randomBytes(3).toString('hex')}`;
    // intC is not in any group's chain: without it the path cannot reach root 1.
    const short = await enrollWithIdevid(deviceId, await makeIdevid(deviceId, intC), []);
    expect(short).toEqual({ status: 401, type: 'urn:fleetproof:problem:manufacturer-chain-untrusted' });
    const rogueRoot = await makeCa('rogue-root');
    const rogue = await enrollWithIdevid('rogue-1', await makeIdevid('rogue-1', rogueRoot), []);
    expect(rogue).toEqual({ status: 401, type: 'urn:fleetproof:problem:manufacturer-chain-untrusted' });
  });
});

describe('enrollment token over MQTT with a manufacturer certificate', () => {
  const connectWith = async (deviceId: string, idevid: Issued, intermediates: Issued[]) =>
    mqtt.connectAsync(service.app.urls.mqtt, {
      clientId: deviceId,
      key: await readFile(idevid.key),
      cert: (await Promise.all([idevid, ...intermediates].map((c) => readFile(c.cert, 'utf8')))).join(''),
      ca: await readFile(rootPem),
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });

  it('answers a registered device on cps/enroll/{id}/ott with a one-time token', async () => {
    const deviceId = `plc-mqtt-${randomBytes(3).toString('hex')}`;
    const cdi = `sha256:${'cd'.repeat(32)}`;
    await service.services.inventory.register(
      service.services.database.orm.em.fork(),
      { device_id: deviceId, device_type: 'PLC', expected_cdi_commitment: cdi },
      'test',
    );
    const client = await connectWith(deviceId, await makeIdevid(deviceId, intA), [intA]);
    try {
      await client.subscribeAsync(`cps/enroll/${deviceId}/ott`, { qos: 1 });
      const answer = new Promise<Record<string, string>>((resolve) =>
        client.once('message', (_topic, payload) =>
          resolve(JSON.parse(payload.toString()) as Record<string, string>),
        ),
      );
      await client.publishAsync(
        `cps/enroll/${deviceId}`,
        JSON.stringify({ cdi_commitment: cdi, model: 'X200', fw: '4.2.0', device_type: 'PLC' }),
        { qos: 1 },
      );
      const reply = await answer;
      expect(reply.error).toBeUndefined();
      expect(reply.ott).toMatch(/^[\w-]{43}$/);
      expect(new Date(reply.expires_at!).getTime()).toBeGreaterThan(Date.now());
    } finally {
      await client.endAsync();
    }
  });

  it('answers with the refusal reason, and allows a bootstrap identity nothing but enrollment', async () => {
    const deviceId = `plc-unregistered-${randomBytes(3).toString('hex')}`;
    const client = await connectWith(deviceId, await makeIdevid(deviceId, intA), [intA]);
    await client.subscribeAsync(`cps/enroll/${deviceId}/ott`, { qos: 1 });
    const answer = new Promise<Record<string, string>>((resolve) =>
      client.once('message', (_topic, payload) =>
        resolve(JSON.parse(payload.toString()) as Record<string, string>),
      ),
    );
    await client.publishAsync(
      `cps/enroll/${deviceId}`,
      JSON.stringify({
        cdi_commitment: `sha256:${'ee'.repeat(32)}`,
        model: 'X200',
        fw: '4.2.0',
        device_type: 'PLC',
      }),
      { qos: 1 },
    );
    expect((await answer).error).toBe('device-not-registered');
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(`cps/telemetry/${deviceId}`, '{"temp": 20}', { qos: 1 });
    await closed;
    client.end(true);
  });

  it('refuses a manufacturer certificate of no group at connect', async () => {
    const deviceId = `plc-nogroup-${randomBytes(3).toString('hex')}`;
    await expect(connectWith(deviceId, await makeIdevid(deviceId, intC), [intC])).rejects.toThrow();
  });
});

describe('enrollment groups in GraphQL', () => {
  const mutation = `mutation Create($input: EnrollmentGroupInput!) {
    createEnrollmentGroup(input: $input) {
      __typename
      ... on MutationCreateEnrollmentGroupSuccess { data { name representativeFingerprint defaultDeviceType autoApprove } }
      ... on ValidationFailed { field }
    }
  }`;

  it('lets an admin create a group, validates the representative, and refuses other roles', async () => {
    const admin = await service.token('admin');
    const operator = await service.token('operator');
    const root3 = await makeCa('acme-root-3');
    const input = {
      name: 'Gateways root 3',
      chainPems: [await readFile(root3.cert, 'utf8')],
      representativeFingerprint: await fingerprint(root3.cert),
      defaultDeviceType: 'GATEWAY',
    };
    const created = await graphql<{ createEnrollmentGroup: Record<string, unknown> }>(
      service.app.urls.graphql,
      admin,
      mutation,
      { input },
    );
    expect(created.body.data?.createEnrollmentGroup).toEqual({
      __typename: 'MutationCreateEnrollmentGroupSuccess',
      data: {
        name: 'Gateways root 3',
        representativeFingerprint: input.representativeFingerprint.replaceAll(':', '').toLowerCase(),
        defaultDeviceType: 'GATEWAY',
        autoApprove: false,
      },
    });
    const invalid = await graphql<{ createEnrollmentGroup: Record<string, unknown> }>(
      service.app.urls.graphql,
      admin,
      mutation,
      {
        input: { ...input, name: 'other', representativeFingerprint: 'ab'.repeat(32) },
      },
    );
    expect(invalid.body.data?.createEnrollmentGroup).toEqual({
      __typename: 'ValidationFailed',
      field: 'representativeFingerprint',
    });
    const refused = await graphql(service.app.urls.graphql, operator, mutation, {
      input: { ...input, name: 'x' },
    });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
