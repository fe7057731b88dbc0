import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { FIRMWARE_HASH, OpensslDevice } from '../../support/attestation-device.js';
import { graphql, graphqlData, startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

let service: TestService;
let admin: string;
let integration: string;
let viewer: string;
const clock = new ManualClock();
const devices: OpensslDevice[] = [];
const NEWER_HASH = `sha256:${'e2'.repeat(32)}`;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock });
  [admin, integration, viewer] = await Promise.all([
    service.token('admin'),
    service.token('integration'),
    service.token('viewer'),
  ]);
});

afterAll(async () => {
  for (const device of devices) await device.dispose();
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();
const uniqueId = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

const gql = <T>(token: string, query: string, variables?: Record<string, unknown>) =>
  graphqlData<T>(service.app.urls.graphql, token, query, variables);

function bundle(overrides: {
  firmware?: Record<string, { versions: Array<{ version: string; hash: string }>; latest: string }>;
  maxAgeDays?: number;
}) {
  return {
    defaultCriticality: 'critical',
    firmware: overrides.firmware ?? {},
    risk: {
      weights: { FIRMWARE_DRIFT: 1, TELEMETRY_ANOMALY: 1, IOC_HIT: 1.5, ATTESTATION: 1 },
      severityPoints: { LOW: 5, MEDIUM: 15, HIGH: 35, CRITICAL: 60 },
      halfLifeHours: 24,
    },
    telemetry: { rules: [{ metric: 'temperature', max: 80, severity: 'HIGH' }], maxMessagesPerMinute: 600 },
    maxAgeDays: overrides.maxAgeDays ?? 90,
  };
}

const publish = `mutation Publish($input: PublishPolicyBundleInput!) {
  publishPolicyBundle(input: $input) {
    __typename
    ... on MutationPublishPolicyBundleSuccess { data { version stale approvedFirmware { model version latest } } }
    ... on ValidationFailed { field message }
  }
}`;

type PublishResult = {
  publishPolicyBundle: {
    __typename: string;
    field?: string;
    data?: { version: number; stale: boolean; approvedFirmware: Array<{ version: string; latest: boolean }> };
  };
};

const risk = `query Risk($id: String!) {
  device(deviceId: $id) {
    riskScore riskBand policyBundleVersion
    riskFactors(first: 20) { totalCount edges { node { kind severity source detail contribution clearedAt } } }
    cases { number source status }
  }
}`;

type RiskView = {
  device: {
    riskScore: number;
    riskBand: string;
    policyBundleVersion: number | null;
    riskFactors: {
      totalCount: number;
      edges: Array<{
        node: { kind: string; severity: string; source: string; detail: string; clearedAt: string | null };
      }>;
    };
    cases: Array<{ number: number; source: string; status: string }>;
  };
};

const riskOf = async (deviceId: string) => (await gql<RiskView>(viewer, risk, { id: deviceId })).device;

async function register(deviceId: string): Promise<void> {
  await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'HMI' }, 'test');
}

describe('policy bundles', () => {
  it('refuses a malformed bundle and names the field', async () => {
    const broken = bundle({
      firmware: { X200: { versions: [{ version: '1.0', hash: FIRMWARE_HASH }], latest: '2.0' } },
    });
    const result = await gql<PublishResult>(admin, publish, {
      input: { deviceType: 'RTU', document: broken },
    });
    expect(result.publishPolicyBundle).toMatchObject({
      __typename: 'ValidationFailed',
      field: 'document.firmware.X200.latest',
    });
    const badHash = bundle({
      firmware: { X200: { versions: [{ version: '1.0', hash: 'md5:abc' }], latest: '1.0' } },
    });
    const second = await gql<PublishResult>(admin, publish, {
      input: { deviceType: 'RTU', document: badHash },
    });
    expect(second.publishPolicyBundle.field).toBe('document.firmware.X200.versions.0.hash');
    const current = await gql<{ policyBundle: null }>(
      viewer,
      `{ policyBundle(deviceType: RTU) { version } }`,
    );
    expect(current.policyBundle).toBeNull();
  });

  it('is for admins only', async () => {
    const { body } = await graphql(service.app.urls.graphql, integration, publish, {
      input: { deviceType: 'RTU', document: bundle({}) },
    });
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('raises drift for devices on the older firmware when a newer version is approved', async () => {
    const onOld = await OpensslDevice.enroll(service, uniqueId('drift-old'), {
      model: 'X200',
      version: '1.0',
      hash: FIRMWARE_HASH,
    });
    const onNew = await OpensslDevice.enroll(service, uniqueId('drift-new'), {
      model: 'X200',
      version: '1.1',
      hash: NEWER_HASH,
    });
    devices.push(onOld, onNew);
    const v1 = await gql<PublishResult>(admin, publish, {
      input: {
        deviceType: 'PLC',
        document: bundle({
          firmware: { X200: { versions: [{ version: '1.0', hash: FIRMWARE_HASH }], latest: '1.0' } },
        }),
      },
    });
    const firstVersion = v1.publishPolicyBundle.data!.version;
    await service.riskScheduler.tick();
    expect(await riskOf(onOld.deviceId)).toMatchObject({ riskScore: 0, policyBundleVersion: firstVersion });
    // Not on v1's list: unvetted firmware.
    const unvetted = await riskOf(onNew.deviceId);
    expect(unvetted.riskFactors.edges[0]?.node).toMatchObject({ kind: 'FIRMWARE_DRIFT', severity: 'HIGH' });
    expect(unvetted.riskFactors.edges[0]?.node.detail).toContain('unvetted firmware');
    expect(unvetted.riskScore).toBe(35);

    const v2 = await gql<PublishResult>(admin, publish, {
      input: {
        deviceType: 'PLC',
        document: bundle({
          firmware: {
            X200: {
              versions: [
                { version: '1.0', hash: FIRMWARE_HASH },
                { version: '1.1', hash: NEWER_HASH },
              ],
              latest: '1.1',
            },
          },
        }),
      },
    });
    expect(v2.publishPolicyBundle.data).toMatchObject({
      version: firstVersion + 1,
      approvedFirmware: [
        { version: '1.0', latest: false },
        { version: '1.1', latest: true },
      ],
    });
    await service.riskScheduler.tick();
    const behind = await riskOf(onOld.deviceId);
    expect(behind.riskScore).toBeGreaterThan(0);
    expect(behind.policyBundleVersion).toBe(firstVersion + 1);
    expect(behind.riskFactors.edges[0]?.node).toMatchObject({ kind: 'FIRMWARE_DRIFT', severity: 'LOW' });
    expect(behind.riskFactors.edges[0]?.node.detail).toContain('1 version behind 1.1');
    // The device on the latest version is clean now, and its old unvetted entry is cleared in the trail.
    const current = await riskOf(onNew.deviceId);
    expect(current.riskScore).toBe(0);
    expect(current.riskFactors.edges.every((edge) => edge.node.clearedAt !== null)).toBe(true);

    const published = await em().count(AuditEvent, { action: 'policy.published', subject: 'policy:PLC' });
    expect(published).toBe(2);
  });

  it('scores no drift for a device that has reported no firmware yet', async () => {
    const deviceId = uniqueId('not-enrolled');
    await service.services.inventory.register(
      em(),
      { device_id: deviceId, device_type: 'PLC', model: 'X200' },
      'test',
    );
    await service.riskScheduler.tick();
    const view = await riskOf(deviceId);
    expect(view.policyBundleVersion).not.toBeNull(); // scored by the policy pass
    expect(view).toMatchObject({ riskScore: 0, riskFactors: { totalCount: 0 } });
  });

  it('shows a stale bundle in health and in the trail', async () => {
    await gql<PublishResult>(admin, publish, {
      input: { deviceType: 'SENSOR', document: bundle({ maxAgeDays: 1 }) },
    });
    const deviceId = uniqueId('stale');
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'SENSOR' }, 'test');
    clock.advance(2 * 86_400_000);
    try {
      const health = (await (await fetch(`${service.app.urls.http}/api/v1/health`)).json()) as {
        checks: { policy: { detail: { stale: string[] } } };
      };
      expect(health.checks.policy.detail.stale).toContain('SENSOR');
      const view = await gql<{ policyBundle: { stale: boolean } }>(
        viewer,
        `{ policyBundle(deviceType: SENSOR) { stale } }`,
      );
      expect(view.policyBundle.stale).toBe(true);
      await reportIoc(deviceId, 'ioc-stale', 'LOW');
      const history = await gql<{ device: { riskHistory: Array<{ bundleStale: boolean }> } }>(
        viewer,
        `query H($id: String!) { device(deviceId: $id) { riskHistory(since: "2000-01-01T00:00:00Z") { bundleStale } } }`,
        { id: deviceId },
      );
      expect(history.device.riskHistory.at(-1)?.bundleStale).toBe(true);
    } finally {
      clock.advance(-2 * 86_400_000);
    }
  });
});

const reportIocMutation = `mutation Ioc($id: String!, $indicator: String!, $severity: Severity!, $at: DateTime!) {
  reportIocHit(deviceId: $id, indicator: $indicator, source: "misp", severity: $severity, observedAt: $at) {
    __typename
    ... on MutationReportIocHitSuccess { data { score band duplicate factors { kind } } }
    ... on DeviceNotFound { deviceId }
  }
}`;

type IocResult = {
  reportIocHit: {
    __typename: string;
    data?: { score: number; band: string; duplicate: boolean; factors: Array<{ kind: string }> };
  };
};

async function reportIoc(deviceId: string, indicator: string, severity: string) {
  return (
    await gql<IocResult>(integration, reportIocMutation, {
      id: deviceId,
      indicator,
      severity,
      at: clock.now().toISOString(),
    })
  ).reportIocHit;
}

describe('IOC hits', () => {
  it('push a device into CRITICAL with exactly one case; a second hit appends to it; repeats are idempotent', async () => {
    const deviceId = uniqueId('ioc');
    await register(deviceId);
    const first = await reportIoc(deviceId, '203.0.113.7', 'CRITICAL');
    expect(first.data).toMatchObject({
      score: 90,
      band: 'CRITICAL',
      duplicate: false,
      factors: [{ kind: 'IOC_HIT' }],
    });
    const opened = await riskOf(deviceId);
    expect(opened.cases.filter((c) => c.source === 'RISK_CRITICAL')).toHaveLength(1);

    const repeat = await reportIoc(deviceId, '203.0.113.7', 'CRITICAL');
    expect(repeat.data).toMatchObject({ duplicate: true, factors: [], score: 90 });

    clock.advance(1_000);
    const second = await reportIoc(deviceId, 'evil.example', 'HIGH');
    expect(second.data).toMatchObject({ score: 100, band: 'CRITICAL', duplicate: false });
    const after = await riskOf(deviceId);
    expect(after.cases.filter((c) => c.source === 'RISK_CRITICAL')).toHaveLength(1);
    expect(after.riskFactors.totalCount).toBe(2);
    // The second hit's evidence is an entry of the case's timeline, after the opening one.
    const caseEvidence = await gql<{
      device: { cases: Array<{ timeline: { edges: Array<{ node: { kind: string } }> } }> };
    }>(
      viewer,
      `query C($id: String!) { device(deviceId: $id) { cases { timeline { edges { node { kind } } } } } }`,
      { id: deviceId },
    );
    expect(caseEvidence.device.cases[0]?.timeline.edges.map((edge) => edge.node.kind)).toEqual([
      'OPENED',
      'EVIDENCE',
    ]);

    const audited = await em().find(AuditEvent, {
      action: 'risk.ioc-reported',
      subject: `device:${deviceId}`,
    });
    expect(audited).toHaveLength(2);
    const band = await em().find(AuditEvent, { action: 'risk.band-changed', subject: `device:${deviceId}` });
    expect(band.map((event) => event.details)).toEqual([
      expect.objectContaining({ from: 'NORMAL', to: 'CRITICAL' }),
    ]);
  });

  it('refuses an unknown device and a report from the future, and viewers', async () => {
    const missing = await reportIoc('no-such-device', 'x', 'LOW');
    expect(missing).toMatchObject({ __typename: 'DeviceNotFound' });
    const deviceId = uniqueId('future');
    await register(deviceId);
    const future = await graphql<{ reportIocHit: { __typename: string } }>(
      service.app.urls.graphql,
      integration,
      `mutation { reportIocHit(deviceId: "${deviceId}", indicator: "x", source: "s", severity: LOW,
         observedAt: "2999-01-01T00:00:00Z") { __typename } }`,
    );
    expect(future.body.data?.reportIocHit.__typename).toBe('ValidationFailed');
    const { body } = await graphql(service.app.urls.graphql, viewer, reportIocMutation, {
      id: deviceId,
      indicator: 'x',
      severity: 'LOW',
      at: clock.now().toISOString(),
    });
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});

describe('telemetry', () => {
  it('breaking a bundle rule over the broker raises the score and shows in the trail', async () => {
    await gql<PublishResult>(admin, publish, {
      input: {
        deviceType: 'PLC',
        document: bundle({
          firmware: { X300: { versions: [{ version: '2.0', hash: FIRMWARE_HASH }], latest: '2.0' } },
        }),
      },
    });
    const device = await OpensslDevice.enroll(service, uniqueId('telemetry'), {
      model: 'X300',
      version: '2.0',
      hash: FIRMWARE_HASH,
    });
    devices.push(device);
    const topic = `cps/telemetry/${device.deviceId}`;
    await device.client.publishAsync(topic, JSON.stringify({ metrics: { temperature: 42 } }), { qos: 1 });
    await device.client.publishAsync(topic, 'not json', { qos: 1 });
    await device.client.publishAsync(topic, JSON.stringify({ metrics: { temperature: 95.5 } }), { qos: 1 });
    const view = await until(
      () => riskOf(device.deviceId),
      (value) => value.riskFactors.edges[0]?.node.kind === 'TELEMETRY_ANOMALY',
    );
    expect(view.riskScore).toBe(35);
    expect(view.riskFactors.edges[0]?.node).toMatchObject({
      kind: 'TELEMETRY_ANOMALY',
      severity: 'HIGH',
      source: 'telemetry',
    });
    expect(view.riskFactors.edges[0]?.node.detail).toContain('temperature=95.5 above the maximum 80');
    const metrics = await (await fetch(`${service.app.urls.http}/metrics`)).text();
    expect(metrics).toMatch(/fleetproof_mqtt_messages_total\{kind="telemetry",result="malformed"\} 1/);
  });
});
