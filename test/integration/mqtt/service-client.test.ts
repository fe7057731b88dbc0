import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EMBEDDED_BROKER_PROTOCOL_VERSION,
  SERVICE_IDENTITY_URI,
  startEmbeddedBroker,
  type EmbeddedBroker,
  type EmbeddedBrokerOptions,
} from '../../../src/mqtt/embedded-broker.js';
import {
  createServiceMqttClient,
  MqttNotConnectedError,
  type ServiceMqttClient,
} from '../../../src/mqtt/service-client.js';
import { topics } from '../../../src/mqtt/topics.js';
import { connectDeviceOrThrow, MessageCollector } from '../../support/mqtt-clients.js';
import { OpensslTestPki, type IssuedCert, type TestCa } from '../../support/mqtt-pki.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

let pki: OpensslTestPki;
let root: TestCa;
let deviceCert: IssuedCert;
let serviceCert: IssuedCert;
let brokerOptions: EmbeddedBrokerOptions;
let broker: EmbeddedBroker;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await OpensslTestPki.create();
  root = await pki.rootCa('root');
  const issuing = await pki.issuingCa('issuing', root);
  const [server, device, service] = await Promise.all([
    pki.serverCert('broker', issuing),
    pki.clientCert('dev-100', issuing),
    pki.clientCert('fleetproof-service', issuing, [SERVICE_IDENTITY_URI]),
  ]);
  deviceCert = device;
  serviceCert = service;
  brokerOptions = {
    host: '127.0.0.1',
    port: 0,
    tls: { keyPem: server.keyPem, certPem: server.chainPem, caPems: [root.certPem, issuing.certPem] },
    logger,
  };
  broker = await startEmbeddedBroker(brokerOptions);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await broker?.close();
  await pki?.cleanup();
});

function serviceClient(clientId: string): ServiceMqttClient {
  const client = createServiceMqttClient({
    url: `mqtts://localhost:${broker.port}`,
    tls: { keyPem: serviceCert.keyPem, certPem: serviceCert.chainPem, caPems: [root.certPem] },
    clientId,
    logger,
    protocolVersion: EMBEDDED_BROKER_PROTOCOL_VERSION,
    reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
  });
  cleanups.push(() => client.close());
  return client;
}

async function deviceClient(): Promise<MqttClient> {
  const client = await connectDeviceOrThrow(`mqtts://localhost:${broker.port}`, {
    clientId: 'dev-100',
    cert: deviceCert,
    caPem: root.certPem,
  });
  cleanups.push(() => client.endAsync(true));
  return client;
}

describe('service MQTT client', () => {
  it('keeps delivering after a handler throws or rejects', async () => {
    const service = serviceClient('fleetproof-service-handlers');
    await service.waitForConnection();
    const received = new MessageCollector();
    let failures = 0;
    await service.subscribe('cps/telemetry/+', () => {
      failures += 1;
      throw new Error('handler bug');
    });
    await service.subscribe('cps/telemetry/+', () => {
      failures += 1;
      return Promise.reject(new Error('async handler bug'));
    });
    await service.subscribe('cps/telemetry/+', ({ topic, payload }) =>
      received.push({ topic, payload: payload.toString() }),
    );
    const device = await deviceClient();
    await device.publishAsync(topics.telemetry('dev-100'), 'one', { qos: 1 });
    await device.publishAsync(topics.telemetry('dev-100'), 'two', { qos: 1 });
    await received.waitFor((m) => m.payload === 'two');
    expect(received.messages.map((m) => m.payload)).toEqual(['one', 'two']);
    expect(failures).toBe(4);
    expect(service.state.status).toBe('connected');
  });

  it('reconnects after the broker restarts on the same port and its subscriptions still deliver', async () => {
    const service = serviceClient('fleetproof-service-reconnect');
    await service.waitForConnection();
    const received = new MessageCollector();
    await service.subscribe(topics.telemetry('dev-100'), ({ topic, payload }) =>
      received.push({ topic, payload: payload.toString() }),
    );

    const port = broker.port;
    await broker.close();
    await expect.poll(() => service.state.status, { timeout: 15_000 }).toBe('reconnecting');
    await expect(service.publish(topics.attestChallenge('dev-100'), 'x', { qos: 1 })).rejects.toBeInstanceOf(
      MqttNotConnectedError,
    );

    broker = await startEmbeddedBroker({ ...brokerOptions, port });
    expect(broker.port).toBe(port);
    await service.waitForConnection();
    expect(broker.isConnected('fleetproof-service-reconnect')).toBe(true);

    const device = await deviceClient();
    const marker = `after-restart-${randomBytes(4).toString('hex')}`;
    // The restarted broker has no session: delivery proves the client subscribed again on its own.
    await device.publishAsync(topics.telemetry('dev-100'), marker, { qos: 1 });
    const message = await received.waitFor((m) => m.payload === marker);
    expect(message.topic).toBe('cps/telemetry/dev-100');
  });

  it('reports closed after close()', async () => {
    const service = serviceClient('fleetproof-service-close');
    await service.waitForConnection();
    await service.close();
    expect(service.state.status).toBe('closed');
    await expect(service.publish('cps/x', 'y', { qos: 0 })).rejects.toBeInstanceOf(MqttNotConnectedError);
  });
});

// CI runs Mosquitto at mqtt://127.0.0.1:1883 (plain); set MQTT_URL to exercise MQTT 5 against it.
describe.runIf(process.env.MQTT_URL)('service MQTT client on an external broker (MQTT 5)', () => {
  it('publishes with message expiry and receives its own subscription', async () => {
    const url = process.env.MQTT_URL ?? '';
    const run = randomBytes(4).toString('hex');
    const client = createServiceMqttClient({ url, clientId: `fleetproof-service-${run}`, logger });
    cleanups.push(() => client.close());
    await client.waitForConnection();
    expect(client.protocolVersion).toBe(5);
    const received = new MessageCollector();
    const topic = `fleetproof-test/${run}/cps/attest/challenge/dev-1`;
    await client.subscribe(`fleetproof-test/${run}/cps/attest/challenge/+`, ({ topic: t, payload, packet }) =>
      received.push({
        topic: t,
        payload: `${payload.toString()}|${packet.properties?.messageExpiryInterval}`,
      }),
    );
    await client.publish(topic, 'nonce', { qos: 1, messageExpiryIntervalS: 30 });
    const message = await received.waitFor((m) => m.topic === topic);
    // The broker forwards the remaining lifetime (MQTT 5, 3.3.2.3.3): at most what was sent.
    const [payload, expiry] = message.payload.split('|');
    expect(payload).toBe('nonce');
    expect(Number(expiry)).toBeGreaterThan(0);
    expect(Number(expiry)).toBeLessThanOrEqual(30);
  });
});
