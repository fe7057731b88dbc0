import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { AttestationChallenge } from '../../../src/attestation/challenge.entity.js';
import { DeviceCertificate } from '../../../src/certificates/device-certificate.entity.js';
import { Device } from '../../../src/devices/device.entity.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let viewer: string;
let admin: string;

const globalId = (typename: string, key: string) => Buffer.from(`${typename}:${key}`).toString('base64');

/** The ids of one object of every node type, created through the services or as plain rows. */
const ids: Record<'device' | 'case' | 'certificate' | 'result' | 'audit', string> = {
  device: '',
  case: '',
  certificate: '',
  result: '',
  audit: '',
};

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  [viewer, admin] = await Promise.all([service.token('viewer', 'nodes'), service.token('admin', 'nodes')]);
  const facilities = await service.token('facilities', 'nodes');
  const registered = await graphql<{ registerDevice: { data: { device: { id: string } } } }>(
    service.app.urls.graphql,
    facilities,
    `
      mutation {
        registerDevice(input: { deviceId: "node-plc-1", deviceType: PLC }) {
          ... on MutationRegisterDeviceSuccess {
            data {
              device {
                id
              }
            }
          }
        }
      }
    `,
  );
  ids.device = registered.body.data!.registerDevice.data.device.id;

  const { services } = service;
  const em = services.database.orm.em.fork();
  const device = await em.findOneOrFail(Device, { deviceId: 'node-plc-1' });
  const opened = await services.transactions.run(em, (tx) =>
    services.cases.openOrAppend(tx, {
      title: 'node test',
      severity: 'LOW',
      source: 'MANUAL',
      deviceRef: device.id,
      evidence: {},
      actor: 'test',
    }),
  );
  ids.case = globalId('Case', opened.id);
  const now = new Date();
  const certificate = Object.assign(new DeviceCertificate(), {
    id: randomUUID(),
    deviceRef: device.id,
    serialHex: '0a0b0c',
    fingerprintSha256: 'f'.repeat(64),
    spkiSha256: 'e'.repeat(64),
    pem: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
    notBefore: now,
    notAfter: now,
    issuedAt: now,
  });
  const challenge = Object.assign(new AttestationChallenge(), {
    id: randomUUID(),
    deviceRef: device.id,
    deviceId: device.deviceId,
    nonce: 'n',
    issuedAt: now,
    deadlineAt: now,
    state: 'TIMED_OUT',
    decidedAt: now,
  });
  const result = Object.assign(new AttestationResult(), {
    challengeId: challenge.id,
    deviceRef: device.id,
    deviceId: device.deviceId,
    outcome: 'TIMEOUT',
    status: 'PENDING',
    decidedAt: now,
  });
  await em.persist([certificate, challenge]).flush();
  await em.persist(result).flush();
  ids.certificate = globalId('Certificate', certificate.id);
  ids.result = globalId('AttestationResult', result.seq);
  const audit = await graphql<{ auditEvents: { edges: Array<{ node: { id: string } }> } }>(
    service.app.urls.graphql,
    admin,
    '{ auditEvents(first: 1) { edges { node { id } } } }',
  );
  ids.audit = audit.body.data!.auditEvents.edges[0]!.node.id;
});

afterAll(async () => {
  await service?.close();
});

const NODE_FIELDS = `__typename id
  ... on Device { deviceId }
  ... on Case { title }
  ... on Certificate { serial }
  ... on AttestationResult { outcome device { deviceId } }
  ... on AuditEvent { action }`;

async function node(token: string, id: string) {
  const { status, body } = await graphql<{ node: Record<string, unknown> | null }>(
    service.app.urls.graphql,
    token,
    `query ($id: ID!) { node(id: $id) { ${NODE_FIELDS} } }`,
    { id },
  );
  expect(status).toBe(200);
  return body;
}

describe('global object identification', () => {
  it('finds every node type by its global id, the same object the typed fields return', async () => {
    expect((await node(viewer, ids.device)).data?.node).toEqual({
      __typename: 'Device',
      id: ids.device,
      deviceId: 'node-plc-1',
    });
    expect((await node(viewer, ids.case)).data?.node).toMatchObject({
      __typename: 'Case',
      title: 'node test',
    });
    expect((await node(viewer, ids.certificate)).data?.node).toMatchObject({
      __typename: 'Certificate',
      serial: '0a0b0c',
    });
    expect((await node(viewer, ids.result)).data?.node).toMatchObject({
      __typename: 'AttestationResult',
      outcome: 'TIMEOUT',
      device: { deviceId: 'node-plc-1' },
    });
    expect((await node(admin, ids.audit)).data?.node).toMatchObject({
      __typename: 'AuditEvent',
      id: ids.audit,
    });
    const typed = await graphql<{ device: { id: string } }>(
      service.app.urls.graphql,
      viewer,
      '{ device(deviceId: "node-plc-1") { id } }',
    );
    expect(typed.body.data?.device.id).toBe(ids.device);
  });

  it('reads a forbidden object exactly like a missing one (no existence oracle)', async () => {
    // The audit trail is admin-only through auditEvents; node must not be a way around that.
    const listed = await graphql(
      service.app.urls.graphql,
      viewer,
      '{ auditEvents(first: 1) { __typename } }',
    );
    expect(listed.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const forbidden = await node(viewer, ids.audit);
    const missing = await node(viewer, globalId('AuditEvent', '999999'));
    expect(forbidden).toEqual({ data: { node: null } });
    expect(missing).toEqual(forbidden);
  });

  it('answers malformed ids, unknown types and non-node types with the same null', async () => {
    for (const id of [
      'not base64 at all',
      globalId('Nope', '1'),
      globalId('Query', '1'),
      globalId('Device', 'no-such-device'),
      globalId('Case', 'not-a-uuid'),
      globalId('AttestationResult', '1 or 1=1'),
      globalId('Certificate', randomUUID()),
    ]) {
      expect(await node(viewer, id), id).toEqual({ data: { node: null } });
    }
  });

  it('resolves nodes(ids) in order, null where missing or forbidden', async () => {
    const { body } = await graphql<{ nodes: Array<{ __typename: string } | null> }>(
      service.app.urls.graphql,
      viewer,
      `
        query ($ids: [ID!]!) {
          nodes(ids: $ids) {
            __typename
          }
        }
      `,
      { ids: [ids.result, ids.audit, ids.device, globalId('Device', 'missing'), ids.case, ids.device] },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data?.nodes).toEqual([
      { __typename: 'AttestationResult' },
      null,
      { __typename: 'Device' },
      null,
      { __typename: 'Case' },
      { __typename: 'Device' },
    ]);
    const asAdmin = await graphql<{ nodes: Array<{ __typename: string } | null> }>(
      service.app.urls.graphql,
      admin,
      `
        query ($ids: [ID!]!) {
          nodes(ids: $ids) {
            __typename
          }
        }
      `,
      { ids: [ids.audit, ids.certificate] },
    );
    expect(asAdmin.body.data?.nodes).toEqual([{ __typename: 'AuditEvent' }, { __typename: 'Certificate' }]);
  });
});
