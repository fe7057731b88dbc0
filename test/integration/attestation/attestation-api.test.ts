import { createHash, randomBytes } from 'node:crypto';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../../../src/graphql/cursor.js';
import { FIRMWARE_HASH, OpensslDevice } from '../../support/attestation-device.js';
import { curl } from '../../support/curl.js';
import { graphql, graphqlData, startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

let service: TestService;
let operator: string;
let admin: string;
let viewer: string;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  [operator, admin, viewer] = await Promise.all([
    service.token('operator'),
    service.token('admin'),
    service.token('viewer'),
  ]);
});

afterAll(async () => {
  await service?.close();
});

const update = `mutation Update($input: AttestationSettingsInput!) {
  updateAttestationSettings(input: $input) {
    __typename
    ... on MutationUpdateAttestationSettingsSuccess { data { version nonceSize allowedClockSkewS } }
    ... on ValidationFailed { field }
  }
}`;

type UpdateResult = {
  updateAttestationSettings: { __typename: string; field?: string; data?: Record<string, number> };
};

describe('runtime attestation settings', () => {
  it('starts at the runbook defaults, lets an operator tighten, and demands admin and a reason to weaken', async () => {
    const current = await graphql<{ attestationSettings: Record<string, number> }>(
      service.app.urls.graphql,
      viewer,
      '{ attestationSettings { version nonceSize challengeIntervalCriticalS challengeIntervalStandardS allowedClockSkewS attestationTimeoutS failureThreshold } }',
    );
    expect(current.body.data?.attestationSettings).toEqual({
      version: 0,
      nonceSize: 32,
      challengeIntervalCriticalS: 300,
      challengeIntervalStandardS: 1800,
      allowedClockSkewS: 2,
      attestationTimeoutS: 10,
      failureThreshold: 3,
    });

    const tightened = await graphql<UpdateResult>(service.app.urls.graphql, operator, update, {
      input: { nonceSize: 48 },
    });
    expect(tightened.body.data?.updateAttestationSettings).toEqual({
      __typename: 'MutationUpdateAttestationSettingsSuccess',
      data: { version: 1, nonceSize: 48, allowedClockSkewS: 2 },
    });
    const weakenAsOperator = await graphql<UpdateResult>(service.app.urls.graphql, operator, update, {
      input: { allowedClockSkewS: 30, reason: 'field clocks drift' },
    });
    expect(weakenAsOperator.body.data?.updateAttestationSettings.__typename).toBe('Forbidden');
    const weakenWithoutReason = await graphql<UpdateResult>(service.app.urls.graphql, admin, update, {
      input: { allowedClockSkewS: 30 },
    });
    expect(weakenWithoutReason.body.data?.updateAttestationSettings).toEqual({
      __typename: 'ValidationFailed',
      field: 'reason',
    });
    const nonsense = await graphql<UpdateResult>(service.app.urls.graphql, admin, update, {
      input: { attestationTimeoutS: 400, reason: 'x'.repeat(5) },
    });
    expect(nonsense.body.data?.updateAttestationSettings).toEqual({
      __typename: 'ValidationFailed',
      field: 'attestation_timeout_s',
    });
    const weakened = await graphql<UpdateResult>(service.app.urls.graphql, admin, update, {
      input: { allowedClockSkewS: 30, reason: 'field clocks drift' },
    });
    expect(weakened.body.data?.updateAttestationSettings.data).toEqual({
      version: 2,
      nonceSize: 48,
      allowedClockSkewS: 30,
    });
  });

  it("accepts the runbook's PATCH body and refuses a bad value as problem+json", async () => {
    const patch = (body: unknown) =>
      curl([
        '-X',
        'PATCH',
        `${service.app.urls.http}/api/v1/settings/runtime`,
        '-H',
        `Authorization: Bearer ${admin}`,
        '-H',
        'Content-Type: application/json',
        '--data',
        JSON.stringify(body),
      ]);
    const ok = await patch({
      cps_attestation: { nonce_size: 32, allowed_clock_skew_s: 2 },
      reason: 'back to the runbook',
    });
    expect(ok.status, ok.stdout).toBe(200);
    expect(
      (JSON.parse(ok.stdout) as { cps_attestation: Record<string, number> }).cps_attestation,
    ).toMatchObject({ nonce_size: 32, allowed_clock_skew_s: 2 });
    const bad = await patch({ cps_attestation: { nonce_size: 8 } });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.stdout)).toMatchObject({
      type: 'urn:fleetproof:problem:validation-failed',
      field: 'nonce_size',
    });
    const unknown = await patch({ cps_attestation: { nonce_bytes: 32 } });
    expect(unknown.status).toBe(400);
  });
});

describe('attestation results in GraphQL', () => {
  it('streams each result to attestationEvents with a cursor that attestationResults resumes from', async () => {
    const device = await OpensslDevice.enroll(service, `api-${randomBytes(3).toString('hex')}`);
    try {
      const client = createClient({
        url: service.app.urls.graphql.replace(/^http/, 'ws'),
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${viewer}` },
        retryAttempts: 0,
      });
      const events = client.iterate<{
        attestationEvents: {
          cursor: string;
          outcome: string;
          challengeId: string;
          device: { deviceId: string };
        };
      }>({
        query: `subscription { attestationEvents(filter: { deviceId: "${device.deviceId}" }) {
          ... on AttestationResult { cursor outcome challengeId device { deviceId } } } }`,
      });
      const firstEvent = events.next();
      await new Promise((resolve) => setTimeout(resolve, 300)); // let the subscription register
      const challenge = device.nextChallenge();
      const approved = await graphql<{ approveDevice: { __typename: string } }>(
        service.app.urls.graphql,
        operator,
        `mutation { approveDevice(deviceId: "${device.deviceId}") { __typename } }`,
      );
      expect(approved.body.errors).toBeUndefined();
      const received = await challenge;
      await device.publish(await device.response(received));
      const event = (await firstEvent).value as {
        data: { attestationEvents: { cursor: string; outcome: string; challengeId: string } };
      };
      expect(event.data.attestationEvents).toMatchObject({
        outcome: 'PASS',
        challengeId: received.challenge_id,
      });

      const page = await graphql<{
        attestationResults: {
          totalCount: number;
          edges: Array<{ cursor: string; node: { challengeId: string } }>;
        };
      }>(
        service.app.urls.graphql,
        viewer,
        `{ attestationResults(filter: { deviceId: "${device.deviceId}" }) { totalCount edges { cursor node { challengeId } } } }`,
      );
      expect(page.body.data?.attestationResults.totalCount).toBe(1);
      expect(page.body.data?.attestationResults.edges.map((edge) => edge.cursor)).toEqual([
        event.data.attestationEvents.cursor,
      ]);
      const after = await graphql<{ attestationResults: { totalCount: number; edges: unknown[] } }>(
        service.app.urls.graphql,
        viewer,
        `{ attestationResults(after: "${event.data.attestationEvents.cursor}", filter: { deviceId: "${device.deviceId}" }) { totalCount edges { cursor } } }`,
      );
      // The count is of the whole filtered list, whichever page is read.
      expect(after.body.data?.attestationResults).toEqual({ totalCount: 1, edges: [] });
      const deviceView = await graphql<{
        device: {
          lastAttestation: { outcome: string };
          consecutiveFailures: number;
          attestations: { totalCount: number };
        };
      }>(
        service.app.urls.graphql,
        viewer,
        `{ device(deviceId: "${device.deviceId}") { consecutiveFailures lastAttestation { outcome } attestations { totalCount } } }`,
      );
      expect(deviceView.body.data?.device).toEqual({
        consecutiveFailures: 0,
        lastAttestation: { outcome: 'PASS' },
        attestations: { totalCount: 1 },
      });
      await events.return?.();
      await client.dispose();
    } finally {
      await device.dispose();
    }
  });

  it('files each result under the site its device was at when it was decided', async () => {
    const device = await OpensslDevice.enroll(service, `moved-${randomBytes(3).toString('hex')}`);
    const [before, after] = [
      `plant-${randomBytes(3).toString('hex')}`,
      `plant-${randomBytes(3).toString('hex')}`,
    ];
    const moveTo = (site: string) =>
      service.services.inventory.register(
        service.services.database.orm.em.fork(),
        {
          device_id: device.deviceId,
          device_type: 'PLC',
          criticality: 'critical',
          expected_cdi_commitment: `sha256:${createHash('sha256').update(device.deviceId).digest('hex')}`,
          golden_firmware_hash: FIRMWARE_HASH,
          site,
        },
        'test',
      );
    const resultsAt = (site: string) =>
      graphqlData<{
        attestationResults: { edges: Array<{ node: { challengeId: string; siteId: string } }> };
      }>(
        service.app.urls.graphql,
        viewer,
        `query ($site: String!) { attestationResults(filter: { site: $site }) { edges { node { challengeId siteId } } } }`,
        { site },
      ).then((data) => data.attestationResults.edges.map((edge) => edge.node));
    /** Moves the device to `site`, has `mutation` challenge it and answers: one result there. */
    const answerAt = async (site: string, mutation: 'approveDevice' | 'challengeDevice') => {
      await moveTo(site);
      const next = device.nextChallenge();
      await graphqlData(
        service.app.urls.graphql,
        operator,
        `mutation { ${mutation}(deviceId: "${device.deviceId}") { __typename } }`,
      );
      const challenge = await next;
      await device.publish(await device.response(challenge));
      await until(
        () => resultsAt(site),
        (rows) => rows.length === 1,
      );
      return challenge;
    };
    try {
      const firstChallenge = await answerAt(before, 'approveDevice');
      const secondChallenge = await answerAt(after, 'challengeDevice');
      expect(await resultsAt(before)).toEqual([{ challengeId: firstChallenge.challenge_id, siteId: before }]);
      expect(await resultsAt(after)).toEqual([{ challengeId: secondChallenge.challenge_id, siteId: after }]);
    } finally {
      await device.dispose();
    }
  });

  it('refuses a forged or foreign cursor on the SIEM lists with a typed error', async () => {
    const lists = [
      ['attestationResults', viewer, encodeCursor('attestation', 'abc')],
      ['attestationResults', viewer, encodeCursor('attestation', '1; drop table device')],
      ['attestationResults', viewer, encodeCursor('audit', '1')],
      ['auditEvents', admin, encodeCursor('audit', '12345678901234567890')],
    ] as const;
    for (const [list, token, after] of lists) {
      const { body } = await graphql(
        service.app.urls.graphql,
        token,
        `query ($after: String) { ${list}(after: $after) { totalCount } }`,
        {
          after,
        },
      );
      expect(body.data ?? null).toBeNull();
      expect(body.errors?.[0]?.extensions?.code, `${list} after ${after}`).toBe('INVALID_CURSOR');
    }
  });

  it('refuses to challenge a device that is not approved, and an unknown one', async () => {
    const mutation = (deviceId: string) =>
      `mutation { challengeDevice(deviceId: "${deviceId}") { __typename ... on InvalidTransition { from } } }`;
    await service.services.inventory.register(
      service.services.database.orm.em.fork(),
      { device_id: 'idle-1', device_type: 'HMI' },
      'test',
    );
    const registered = await graphql<{ challengeDevice: { __typename: string; from?: string } }>(
      service.app.urls.graphql,
      operator,
      mutation('idle-1'),
    );
    expect(registered.body.data?.challengeDevice).toEqual({
      __typename: 'InvalidTransition',
      from: 'REGISTERED',
    });
    const unknown = await graphql<{ challengeDevice: { __typename: string } }>(
      service.app.urls.graphql,
      operator,
      mutation('ghost-9'),
    );
    expect(unknown.body.data?.challengeDevice.__typename).toBe('DeviceNotFound');
  });
});
