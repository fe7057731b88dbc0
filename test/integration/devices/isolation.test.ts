import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { CaseEvent } from '../../../src/cases/case-event.entity.js';
import { Case } from '../../../src/cases/case.entity.js';
import { Device } from '../../../src/devices/device.entity.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { OpensslDevice, type Challenge } from '../../support/attestation-device.js';
import { closed } from '../../support/mqtt-clients.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

let service: TestService;
let operator: string;
let viewer: string;
const clock = new ManualClock();
const devices: OpensslDevice[] = [];

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock });
  [operator, viewer] = await Promise.all([service.token('operator', 'soc-alice'), service.token('viewer')]);
});

afterAll(async () => {
  for (const device of devices) await device.dispose();
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();
const uniqueId = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

const ISOLATION_RESULT = `
  __typename
  ... on Error { message code }
  ... on InvalidTransition { from to }
  ... on DeviceNotFound { deviceId }
`;
const isolate = `mutation ($id: String!, $reason: String!) {
  isolateDevice(deviceId: $id, reason: $reason) {
    ${ISOLATION_RESULT}
    ... on MutationIsolateDeviceSuccess { data { deviceId isolated } }
  }
}`;
const release = `mutation ($id: String!, $reason: String!) {
  releaseDevice(deviceId: $id, reason: $reason) {
    ${ISOLATION_RESULT}
    ... on MutationReleaseDeviceSuccess { data { deviceId isolated } }
  }
}`;

interface MutationResult {
  __typename: string;
  code?: string;
  from?: string;
  to?: string;
  data?: { deviceId: string; isolated: boolean };
}

async function mutate(
  query: string,
  deviceId: string,
  reason: string,
  token = operator,
): Promise<MutationResult> {
  const { status, body } = await graphql<Record<string, MutationResult>>(
    service.app.urls.graphql,
    token,
    query,
    { id: deviceId, reason },
  );
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  expect(status).toBe(200);
  return Object.values(body.data!)[0]!;
}

/** An approved device connected with its certificate over TLS, its first challenge answered. */
async function approvedDevice(prefix: string): Promise<OpensslDevice> {
  const device = await OpensslDevice.enroll(service, uniqueId(prefix));
  devices.push(device);
  const first = device.nextChallenge();
  await service.services.lifecycle.approve(em(), device.deviceId, 'test');
  await service.scheduler.tick();
  await answer(device, await first);
  return device;
}

async function answer(
  device: OpensslDevice,
  challenge: Challenge,
  topic?: string,
): Promise<AttestationResult> {
  await device.publish(await device.response(challenge), topic);
  return until(
    () => em().findOne(AttestationResult, { challengeId: challenge.challenge_id }),
    (row) => row !== null,
  ) as Promise<AttestationResult>;
}

async function challenge(device: OpensslDevice): Promise<Challenge> {
  const next = device.nextChallenge();
  await service.services.attestation.challengeNow(em(), device.deviceId, service.challengeTransport, 'test');
  return next;
}

async function messageCount(result: string, kind = 'telemetry', of: TestService = service): Promise<number> {
  const metrics = await (await fetch(`${of.app.urls.http}/metrics`)).text();
  const line = metrics
    .split('\n')
    .find((entry) => entry.startsWith(`fleetproof_mqtt_messages_total{kind="${kind}",result="${result}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

const waitForBroker = (deviceId: string, isolated: boolean) =>
  until(
    () => service.services.isolatedDevices.has(deviceId),
    (value) => value === isolated,
  );

const TELEMETRY = JSON.stringify({ metrics: { temperature: 42 } });

describe('isolation', () => {
  it("refuses an isolated device's telemetry in the embedded broker while its attestation response still passes; release restores it", async () => {
    const device = await approvedDevice('isolated');
    const topic = `cps/telemetry/${device.deviceId}`;
    const accepted = await messageCount('accepted');

    expect(await mutate(isolate, device.deviceId, 'beaconing to a known C2 address')).toEqual({
      __typename: 'MutationIsolateDeviceSuccess',
      data: { deviceId: device.deviceId, isolated: true },
    });
    await waitForBroker(device.deviceId, true);

    // QoS 0: the refused publish gets no PUBACK to wait for; aedes answers a refusal by closing the
    // connection (MQTT-3.3.5-2), which is the observable refusal.
    const gone = closed(device.client);
    await device.client.publishAsync(topic, TELEMETRY, { qos: 0 });
    await gone;

    // Reconnected, it still receives challenges and its answer on its own topic, and on the runbook's
    // bare topic, passes.
    await device.connect(service);
    expect((await answer(device, await challenge(device))).outcome).toBe('PASS');
    expect((await answer(device, await challenge(device), 'cps/attest/response')).outcome).toBe('PASS');
    expect(device.client.connected).toBe(true);
    // The broker refused it: the service's handlers never saw the telemetry, not even to drop it.
    expect(await messageCount('accepted')).toBe(accepted);
    expect(await messageCount('isolated')).toBe(0);

    expect(await mutate(release, device.deviceId, 'C2 traffic was a false positive')).toEqual({
      __typename: 'MutationReleaseDeviceSuccess',
      data: { deviceId: device.deviceId, isolated: false },
    });
    await waitForBroker(device.deviceId, false);
    await device.client.publishAsync(topic, TELEMETRY, { qos: 1 });
    await until(
      () => messageCount('accepted'),
      (count) => count === accepted + 1,
    );
    expect(device.client.connected).toBe(true);
  });

  it('records isolation in the audit trail and on a new MANUAL case when none is open, and shows isolated: true', async () => {
    const deviceId = uniqueId('no-case');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'RTU' }, 'test');

    await mutate(isolate, deviceId, 'lateral movement suspected');
    const row = await em().findOneOrFail(Device, { deviceId });
    expect(row.isolated).toBe(true);
    const cases = await em().find(Case, { deviceRef: row.id });
    expect(cases).toHaveLength(1);
    expect(cases[0]).toMatchObject({ source: 'MANUAL', status: 'OPEN', severity: 'HIGH' });
    const timeline = await em().find(CaseEvent, { caseRef: cases[0]!.id }, { orderBy: { seq: 'asc' } });
    const alice: unknown = expect.stringMatching(/^token:soc-alice\//);
    expect(timeline.map((event) => [event.kind, event.actor, event.body])).toEqual([
      ['OPENED', alice, `${deviceId} isolated`],
      ['DEVICE_ISOLATED', alice, 'lateral movement suspected'],
    ]);
    const [audit] = await em().find(AuditEvent, { action: 'device.isolated', subject: `device:${deviceId}` });
    expect(audit).toMatchObject({
      actor: alice,
      details: { reason: 'lateral movement suspected', cases: [cases[0]!.number] },
    });

    const { body } = await graphql<{
      devices: { edges: Array<{ node: { deviceId: string; isolated: boolean } }> };
    }>(
      service.app.urls.graphql,
      viewer,
      `
        query ($id: String!) {
          device(deviceId: $id) {
            deviceId
            isolated
          }
          devices(filter: { isolated: true }) {
            edges {
              node {
                deviceId
                isolated
              }
            }
          }
        }
      `,
      { id: deviceId },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data).toMatchObject({ device: { deviceId, isolated: true } });
    expect(body.data!.devices.edges.map((edge) => edge.node)).toContainEqual({ deviceId, isolated: true });
  });

  it('appends isolation and release to the open case of the device instead of opening another', async () => {
    const deviceId = uniqueId('with-case');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'PLC' }, 'test');
    const open = await service.services.cases.open(
      em(),
      { title: 'Odd Modbus writes', severity: 'MEDIUM', deviceIds: [deviceId], note: null, assignee: null },
      'token:soc-bob',
    );

    await mutate(isolate, deviceId, 'contain while investigating');
    await mutate(release, deviceId, 'writes explained by maintenance');

    const row = await em().findOneOrFail(Device, { deviceId });
    expect(await em().count(Case, { deviceRef: row.id })).toBe(1);
    const timeline = await em().find(CaseEvent, { caseRef: open.id }, { orderBy: { seq: 'asc' } });
    expect(timeline.map((event) => [event.kind, event.body])).toEqual([
      ['OPENED', 'Odd Modbus writes'],
      ['DEVICE_ISOLATED', 'contain while investigating'],
      ['DEVICE_RELEASED', 'writes explained by maintenance'],
    ]);
    const [released] = await em().find(AuditEvent, {
      action: 'device.released',
      subject: `device:${deviceId}`,
    });
    expect(released?.details).toEqual({ reason: 'writes explained by maintenance', cases: [open.number] });
  });

  it('refuses a second isolation and the release of a device that is not isolated, and audits both', async () => {
    const deviceId = uniqueId('twice');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'HMI' }, 'test');
    await mutate(isolate, deviceId, 'first isolation');

    expect(await mutate(isolate, deviceId, 'second isolation')).toMatchObject({
      __typename: 'InvalidTransition',
      code: 'INVALID_TRANSITION',
      from: 'ISOLATED',
      to: 'ISOLATED',
    });
    await mutate(release, deviceId, 'all clear');
    expect(await mutate(release, deviceId, 'all clear again')).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'NOT_ISOLATED',
    });
    const refused = await em().find(
      AuditEvent,
      { action: 'device.isolation-refused', subject: `device:${deviceId}` },
      { orderBy: { seq: 'asc' } },
    );
    expect(refused.map((event) => event.details.operation)).toEqual(['isolate', 'release']);
    expect(await em().count(AuditEvent, { action: 'device.isolated', subject: `device:${deviceId}` })).toBe(
      1,
    );
    expect(await mutate(isolate, 'no-such-device', 'whatever')).toMatchObject({
      __typename: 'DeviceNotFound',
    });
    expect(await mutate(isolate, deviceId, '  ')).toMatchObject({ __typename: 'ValidationFailed' });
  });

  it('runs once per idempotency key; a refused attempt keeps no key', async () => {
    const deviceId = uniqueId('idempotent');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'GATEWAY' }, 'test');
    const send = async (query: string, reason: string, idempotencyKey: string) => {
      const response = await fetch(service.app.urls.graphql, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${operator}` },
        body: JSON.stringify({ query, variables: { id: deviceId, reason }, extensions: { idempotencyKey } }),
      });
      return (await response.json()) as {
        data: Record<string, MutationResult>;
        extensions?: { idempotentReplay?: boolean };
      };
    };
    const key = `isolate-${deviceId}`;
    const first = await send(isolate, 'suspicious firmware upload', key);
    const retry = await send(isolate, 'suspicious firmware upload', key);
    expect(first.data.isolateDevice?.__typename).toBe('MutationIsolateDeviceSuccess');
    expect(retry).toMatchObject({ data: first.data, extensions: { idempotentReplay: true } });
    expect(await em().count(AuditEvent, { action: 'device.isolated', subject: `device:${deviceId}` })).toBe(
      1,
    );

    const refusedKey = `again-${deviceId}`;
    expect((await send(isolate, 'once more', refusedKey)).data.isolateDevice?.__typename).toBe(
      'InvalidTransition',
    );
    const rerun = await send(isolate, 'once more', refusedKey);
    expect(rerun.data.isolateDevice?.__typename).toBe('InvalidTransition');
    expect(rerun.extensions?.idempotentReplay).toBeUndefined();
    expect(
      await em().count(AuditEvent, { action: 'device.isolation-refused', subject: `device:${deviceId}` }),
    ).toBe(2);
  });

  it('reaches the broker of another instance within seconds, with no event between them', async () => {
    const deviceId = uniqueId('elsewhere');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'PLC' }, 'test');
    // Its own in-process bus: it hears nothing of the first instance's changes.
    const other = await startTestService({
      mqtt: 'embedded',
      databaseUrl: service.config.databaseUrl ?? '',
      dataDir: service.dataDir,
    });
    try {
      expect(other.services.isolatedDevices.has(deviceId)).toBe(false);
      await mutate(isolate, deviceId, 'isolated through the first instance');
      const deadline = Date.now() + 8_000;
      while (!other.services.isolatedDevices.has(deviceId) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(other.services.isolatedDevices.has(deviceId)).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('is for operators only', async () => {
    const deviceId = uniqueId('viewer');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'SENSOR' }, 'test');
    const { body } = await graphql(service.app.urls.graphql, viewer, isolate, {
      id: deviceId,
      reason: 'nope',
    });
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await em().findOneOrFail(Device, { deviceId })).isolated).toBe(false);
  });
});

// CI runs Mosquitto at mqtt://127.0.0.1:1883 (plain, anonymous): its ACL is not ours, so the service
// refuses what an isolated device sends there (the broker-side rule is in the README). The second
// instance shares the first one's PostgreSQL database.
describe.runIf(process.env.MQTT_URL && process.env.DATABASE_URL)(
  'isolation behind an external broker',
  () => {
    it('drops the telemetry and enrollment requests of a device isolated before the instance started', async () => {
      const isolated = uniqueId('external');
      const free = uniqueId('external-free');
      for (const deviceId of [isolated, free])
        await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'PLC' }, 'test');
      await mutate(isolate, isolated, 'isolated while the other instance was down');

      const external = await startTestService({
        mqtt: 'env',
        databaseUrl: service.config.databaseUrl ?? '',
        dataDir: service.dataDir,
      });
      const client = await mqtt.connectAsync(process.env.MQTT_URL ?? '', { reconnectPeriod: 0 });
      // Other test files' instances share this broker and answer too, so only this instance's own
      // counters tell what it did.
      const counts = (kind: string, ...results: string[]) =>
        Promise.all(results.map((result) => messageCount(result, kind, external))).then((values) =>
          values.reduce((sum, value) => sum + value, 0),
        );
      try {
        const request = JSON.stringify({
          cdi_commitment: `sha256:${'ab'.repeat(32)}`,
          device_type: 'PLC',
          fw: '1',
        });
        await client.publishAsync(`cps/enroll/${isolated}`, request, { qos: 1 });
        await client.publishAsync(`cps/telemetry/${isolated}`, TELEMETRY, { qos: 1 });
        await until(
          async () => [await counts('enroll', 'isolated'), await counts('telemetry', 'isolated')],
          (values) => values.every((value) => value === 1),
        );
        // The same messages from a device that is not isolated are handled.
        await client.publishAsync(`cps/enroll/${free}`, request, { qos: 1 });
        await client.publishAsync(`cps/telemetry/${free}`, TELEMETRY, { qos: 1 });
        await until(
          async () => [await counts('enroll', 'issued', 'refused'), await counts('telemetry', 'accepted')],
          (values) => values.every((value) => value === 1),
        );
        expect(await counts('enroll', 'isolated')).toBe(1);
      } finally {
        await client.endAsync(true);
        await external.close();
      }
    });
  },
);
