import { X509Certificate } from 'node:crypto';
import { ErrorWithSubackPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EMBEDDED_BROKER_PROTOCOL_VERSION,
  SERVICE_IDENTITY_URI,
  startEmbeddedBroker,
  type EmbeddedBroker,
  type PeerCertificateInfo,
} from '../../../src/mqtt/embedded-broker.js';
import { createServiceMqttClient, type ServiceMqttClient } from '../../../src/mqtt/service-client.js';
import { topics, serviceTopicFilters } from '../../../src/mqtt/topics.js';
import { closed, connectDevice, connectDeviceOrThrow, MessageCollector } from '../../support/mqtt-clients.js';
import { OpensslTestPki, type IssuedCert, type TestCa } from '../../support/mqtt-pki.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

let pki: OpensslTestPki;
let root: TestCa;
let certs: Record<
  | 'dev1'
  | 'dev2'
  | 'dev3'
  | 'revoked'
  | 'service'
  | 'foreignDev1'
  | 'manufacturerDevice'
  | 'manufacturerService',
  IssuedCert
>;
let broker: EmbeddedBroker;
let url: string;
let service: ServiceMqttClient;
const received = new MessageCollector();
const revocationChecks: PeerCertificateInfo[] = [];
const openClients: MqttClient[] = [];

async function device(clientId: string, cert: IssuedCert): Promise<MqttClient> {
  const client = await connectDeviceOrThrow(url, { clientId, cert, caPem: root.certPem });
  openClients.push(client);
  return client;
}

beforeAll(async () => {
  pki = await OpensslTestPki.create();
  root = await pki.rootCa('root');
  const [issuing, otherRoot, manufacturerRoot] = await Promise.all([
    pki.issuingCa('issuing', root),
    pki.rootCa('other-root'),
    pki.rootCa('manufacturer-root'),
  ]);
  const [
    server,
    dev1,
    dev2,
    dev3,
    revoked,
    serviceCert,
    foreignDev1,
    manufacturerDevice,
    manufacturerService,
  ] = await Promise.all([
    pki.serverCert('broker', issuing),
    pki.clientCert('dev-001', issuing),
    pki.clientCert('dev-002', issuing),
    pki.clientCert('dev-003', issuing),
    pki.clientCert('dev-revoked', issuing),
    pki.clientCert('fleetproof-service', issuing, [SERVICE_IDENTITY_URI]),
    pki.clientCert('dev-001', otherRoot),
    pki.clientCert('mfr-serial-42', manufacturerRoot),
    pki.clientCert('fleetproof-service', manufacturerRoot, [SERVICE_IDENTITY_URI]),
  ]);
  certs = {
    dev1,
    dev2,
    dev3,
    revoked,
    service: serviceCert,
    foreignDev1,
    manufacturerDevice,
    manufacturerService,
  };
  const revokedSerial = new X509Certificate(revoked.certPem).serialNumber.toLowerCase();

  broker = await startEmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    tls: {
      keyPem: server.keyPem,
      certPem: server.chainPem,
      caPems: [root.certPem, issuing.certPem, manufacturerRoot.certPem],
      serviceIssuerPems: [issuing.certPem],
    },
    isCertificateRevoked: (info) => {
      revocationChecks.push(info);
      return Promise.resolve(info.serialHex === revokedSerial);
    },
    logger,
  });
  url = `mqtts://localhost:${broker.port}`;

  service = createServiceMqttClient({
    url,
    tls: { keyPem: serviceCert.keyPem, certPem: serviceCert.chainPem, caPems: [root.certPem] },
    clientId: 'fleetproof-service-test',
    logger,
    protocolVersion: EMBEDDED_BROKER_PROTOCOL_VERSION,
  });
  await service.waitForConnection();
  await service.subscribe(
    [serviceTopicFilters.telemetry, serviceTopicFilters.attestResponse],
    ({ topic, payload }) => received.push({ topic, payload: payload.toString() }),
  );
});

afterAll(async () => {
  for (const client of openClients) await client.endAsync(true);
  await service?.close();
  await broker?.close();
  await pki?.cleanup();
});

describe('embedded broker: authentication', () => {
  it('accepts a device with a certificate from the fleet CA and client id = CN', async () => {
    await device('dev-001', certs.dev1);
    expect(broker.isConnected('dev-001')).toBe(true);
    expect(broker.connectedClients()).toBeGreaterThanOrEqual(2);
    const check = revocationChecks.find((info) => info.commonName === 'dev-001');
    expect(check?.serialHex).toBe(new X509Certificate(certs.dev1.certPem).serialNumber.toLowerCase());
    expect(check?.fingerprintSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a connection without a client certificate (CONNACK 4)', async () => {
    const outcome = await connectDevice(url, { clientId: 'dev-001', caPem: root.certPem });
    expect(outcome).toMatchObject({ ok: false, code: 4 });
  });

  it('refuses a certificate from an unrelated CA even with a known CN (CONNACK 4)', async () => {
    const outcome = await connectDevice(url, {
      clientId: 'dev-001',
      cert: certs.foreignDev1,
      caPem: root.certPem,
    });
    expect(outcome).toMatchObject({ ok: false, code: 4 });
  });

  it('refuses a client id other than the CN and leaves the real owner connected (CONNACK 2)', async () => {
    await device('dev-002', certs.dev2);
    const outcome = await connectDevice(url, { clientId: 'dev-002', cert: certs.dev1, caPem: root.certPem });
    expect(outcome).toMatchObject({ ok: false, code: 2 });
    expect(broker.isConnected('dev-002')).toBe(true);
  });

  it('refuses a revoked certificate (CONNACK 5)', async () => {
    const outcome = await connectDevice(url, {
      clientId: 'dev-revoked',
      cert: certs.revoked,
      caPem: root.certPem,
    });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
    expect(broker.isConnected('dev-revoked')).toBe(false);
  });

  it('accepts a manufacturer-issued device certificate but not a manufacturer-issued service one', async () => {
    await device('mfr-serial-42', certs.manufacturerDevice);
    const outcome = await connectDevice(url, {
      clientId: 'fleetproof-service-evil',
      cert: certs.manufacturerService,
      caPem: root.certPem,
    });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses the service certificate under a client id without the service prefix', async () => {
    const outcome = await connectDevice(url, {
      clientId: 'dev-001',
      cert: certs.service,
      caPem: root.certPem,
    });
    expect(outcome).toMatchObject({ ok: false, code: 2 });
  });
});

describe('embedded broker: authorization', () => {
  it('delivers a device publish on its own telemetry topic to the service', async () => {
    const client = await device('dev-003', certs.dev3);
    await client.publishAsync(topics.telemetry('dev-003'), '{"temp":21}', { qos: 1 });
    const message = await received.waitFor((m) => m.topic === 'cps/telemetry/dev-003');
    expect(message.payload).toBe('{"temp":21}');
  });

  it('drops a publish to another device topic and closes that connection', async () => {
    const intruder = await device('dev-003', certs.dev3);
    const gone = closed(intruder);
    intruder.publish(topics.telemetry('dev-002'), 'forged', { qos: 0 });
    intruder.publish(topics.attestResponse('dev-002'), 'forged', { qos: 0 });
    await gone;

    // Everything the broker accepted before this marker has reached the service by the time it arrives.
    const honest = await device('dev-003', certs.dev3);
    await honest.publishAsync(topics.telemetry('dev-003'), 'marker-1', { qos: 1 });
    await received.waitFor((m) => m.payload === 'marker-1');
    expect(received.messages.filter((m) => m.payload === 'forged')).toEqual([]);
  });

  it('refuses retained messages from a device', async () => {
    const client = await device('dev-003', certs.dev3);
    const gone = closed(client);
    client.publish(topics.telemetry('dev-003'), 'retained', { qos: 0, retain: true });
    await gone;

    const honest = await device('dev-003', certs.dev3);
    await honest.publishAsync(topics.telemetry('dev-003'), 'marker-2', { qos: 1 });
    await received.waitFor((m) => m.payload === 'marker-2');
    expect(received.messages.filter((m) => m.payload === 'retained')).toEqual([]);
  });

  it("refuses a subscription to another device's challenge topic or a wildcard (SUBACK 128)", async () => {
    const client = await device('dev-001', certs.dev1);
    for (const filter of [topics.attestChallenge('dev-002'), 'cps/attest/challenge/+', 'cps/#']) {
      const error: unknown = await client.subscribeAsync(filter, { qos: 1 }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ErrorWithSubackPacket);
      expect((error as ErrorWithSubackPacket).packet.granted).toEqual([128]);
    }
  });

  it('lets a device subscribe to its own challenge topic and receive the service challenge', async () => {
    const client = await device('dev-001', certs.dev1);
    const grants = await client.subscribeAsync(
      [topics.attestChallenge('dev-001'), topics.enrollOtt('dev-001')],
      {
        qos: 1,
      },
    );
    expect(grants.map((g) => g.qos)).toEqual([1, 1]);
    const challenge = new Promise<string>((resolve) =>
      client.once('message', (_topic, payload) => resolve(payload.toString())),
    );
    await service.publish(topics.attestChallenge('dev-001'), 'nonce-123', {
      qos: 1,
      messageExpiryIntervalS: 60,
    });
    expect(await challenge).toBe('nonce-123');
  });
});

describe('embedded broker: disconnect', () => {
  it('closes a connected device at once', async () => {
    const client = await device('dev-002', certs.dev2);
    const gone = closed(client);
    expect(broker.disconnect('dev-002')).toBe(true);
    await gone;
    expect(broker.isConnected('dev-002')).toBe(false);
    expect(broker.disconnect('no-such-device')).toBe(false);
  });
});
