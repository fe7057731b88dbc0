import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { OpensslDevice } from '../../support/attestation-device.js';
import { closed } from '../../support/mqtt-clients.js';
import { graphql, graphqlData, startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

// Short thresholds so the injected clock walks a site through LIVE, STALE and DOWN.
const LIVENESS_ENV = {
  FLEETPROOF_SITE_STALE_AFTER_S: '60',
  FLEETPROOF_SITE_DOWN_AFTER_S: '180',
  FLEETPROOF_DEVICE_ONLINE_WINDOW_S: '120',
};

const SECOND = 1000;

let service: TestService;
let facilities: string;
let viewer: string;
const clock = new ManualClock(new Date('2026-11-29T08:00:00.000Z'));
const devices: OpensslDevice[] = [];

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock, env: LIVENESS_ENV });
  [facilities, viewer] = await Promise.all([service.token('facilities'), service.token('viewer')]);
});

afterAll(async () => {
  for (const device of devices) await device.dispose();
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();
const uniqueId = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

const gql = <T>(token: string, query: string, variables?: Record<string, unknown>) =>
  graphqlData<T>(service.app.urls.graphql, token, query, variables);

const CREATE_SITE = `mutation ($input: CreateSiteInput!) {
  createSite(input: $input) {
    __typename
    ... on MutationCreateSiteSuccess { data { id siteId name controllerId liveness lastHeartbeatAt } }
    ... on Error { code message }
    ... on ValidationFailed { field }
  }
}`;

async function createSite(id: string, controllerId?: string): Promise<void> {
  const result = await gql<{ createSite: { __typename: string } }>(facilities, CREATE_SITE, {
    input: { id, name: `Site ${id}`, ...(controllerId ? { controllerId } : {}) },
  });
  expect(result.createSite.__typename).toBe('MutationCreateSiteSuccess');
}

async function register(deviceId: string, site: string | null): Promise<void> {
  await service.services.inventory.register(
    em(),
    { device_id: deviceId, device_type: 'RTU', ...(site ? { site } : {}) },
    'test',
  );
}

/** What devices said reaches the table (the service flushes on its own timer; tests do not wait for it). */
async function seen(...deviceIds: string[]): Promise<void> {
  for (const id of deviceIds) service.services.presence.seen(id);
  await service.services.presence.flush(em());
}

async function heartbeat(siteId: string, token: string): Promise<Response> {
  return fetch(`${service.app.urls.http}/api/v1/cps/sites/${siteId}/heartbeat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ software_version: '2.4.1' }),
  });
}

async function siteToken(siteId: string): Promise<string> {
  const { token } = await service.services.tokens.create(em(), {
    name: `controller-${siteId}`,
    role: 'site',
    siteId,
    actor: 'test',
  });
  return token;
}

interface DeviceView {
  deviceId: string;
  siteId: string | null;
  site: { siteId: string; liveness: string } | null;
  online: boolean;
  lastSeenAt: string | null;
  offlineCause: string | null;
}

const DEVICE = `query ($id: String!) {
  device(deviceId: $id) { deviceId siteId site { siteId liveness } online lastSeenAt offlineCause }
}`;

const deviceView = async (deviceId: string) =>
  (await gql<{ device: DeviceView }>(viewer, DEVICE, { id: deviceId })).device;

const livenessOf = async (siteId: string) =>
  (
    await gql<{ site: { liveness: string; lastHeartbeatAt: string | null } | null }>(
      viewer,
      `query ($id: String!) { site(id: $id) { liveness lastHeartbeatAt } }`,
      { id: siteId },
    )
  ).site;

describe('site liveness', () => {
  it('goes STALE then DOWN without heartbeats, and its silent devices name the site as the cause', async () => {
    const north = uniqueId('north');
    const south = uniqueId('south');
    await createSite(north);
    await createSite(south);
    const [northToken, southToken] = await Promise.all([siteToken(north), siteToken(south)]);
    const atNorth = uniqueId('rtu-n');
    const atSouth = uniqueId('rtu-s');
    const quietLongAgo = uniqueId('rtu-q');
    const undefinedSite = uniqueId('nowhere');
    await register(atNorth, north);
    await register(atSouth, south);
    await register(quietLongAgo, north);
    await register(undefinedSite, undefinedSite);

    expect((await livenessOf(north))?.liveness).toBe('DOWN'); // never heard from
    await seen(quietLongAgo);
    clock.advance(300 * SECOND);
    expect((await heartbeat(north, northToken)).status).toBe(200);
    expect((await heartbeat(south, southToken)).status).toBe(200);
    await seen(atNorth, atSouth);
    expect(await livenessOf(north)).toMatchObject({
      liveness: 'LIVE',
      lastHeartbeatAt: clock.now().toISOString(),
    });
    expect(await deviceView(atNorth)).toMatchObject({
      siteId: north,
      site: { siteId: north, liveness: 'LIVE' },
      online: true,
      lastSeenAt: clock.now().toISOString(),
      offlineCause: null,
    });
    // Silent since before the site's last heartbeat: the site does not explain it, even once STALE.
    expect(await deviceView(quietLongAgo)).toMatchObject({ online: false, offlineCause: 'DEVICE_SILENT' });

    // 61 s: north's controller is late; south keeps beating. Both devices are still within their window.
    clock.advance(61 * SECOND);
    await heartbeat(south, southToken);
    expect((await livenessOf(north))?.liveness).toBe('STALE');
    expect((await livenessOf(south))?.liveness).toBe('LIVE');
    expect(await deviceView(atNorth)).toMatchObject({ online: true, offlineCause: null });

    // 121 s: both devices fell silent. North's controller went first: the site is the likely cause.
    clock.advance(60 * SECOND);
    await heartbeat(south, southToken);
    expect(await deviceView(atNorth)).toMatchObject({ online: false, offlineCause: 'SITE_STALE' });
    expect(await deviceView(atSouth)).toMatchObject({ online: false, offlineCause: 'DEVICE_SILENT' });

    // 181 s: north is DOWN.
    clock.advance(60 * SECOND);
    expect((await livenessOf(north))?.liveness).toBe('DOWN');
    expect(await deviceView(atNorth)).toMatchObject({
      site: { liveness: 'DOWN' },
      online: false,
      offlineCause: 'SITE_DOWN',
    });
    expect(await deviceView(quietLongAgo)).toMatchObject({ offlineCause: 'DEVICE_SILENT' });
    // A site id nobody defined: nothing was created for it, and it cannot be blamed.
    expect(await deviceView(undefinedSite)).toMatchObject({
      siteId: undefinedSite,
      site: null,
      online: false,
      offlineCause: 'NEVER_SEEN',
    });
    expect(await livenessOf(undefinedSite)).toBeNull();

    // The controller is back: the device's silence is its own again.
    await heartbeat(north, northToken);
    expect((await livenessOf(north))?.liveness).toBe('LIVE');
    expect(await deviceView(atNorth)).toMatchObject({ offlineCause: 'DEVICE_SILENT' });
  });

  it('filters devices by online, on the fleet and on a site', async () => {
    const site = uniqueId('east');
    await createSite(site);
    const talking = uniqueId('rtu-on');
    const quiet = uniqueId('rtu-off');
    await register(talking, site);
    await register(quiet, site);
    await seen(quiet);
    clock.advance(121 * SECOND);
    await seen(talking);
    const query = `query ($site: String!) {
      on: devices(filter: { site: $site, online: true }) { totalCount edges { node { deviceId } } }
      off: devices(filter: { site: $site, online: false }) { totalCount edges { node { deviceId } } }
      site(id: $site) {
        devices { totalCount edges { node { deviceId online } } }
        offline: devices(online: false) { totalCount edges { node { deviceId } } }
      }
    }`;
    type Page = { totalCount: number; edges: Array<{ node: { deviceId: string; online?: boolean } }> };
    const result = await gql<{ on: Page; off: Page; site: { devices: Page; offline: Page } }>(viewer, query, {
      site,
    });
    expect(result.on).toEqual({ totalCount: 1, edges: [{ node: { deviceId: talking } }] });
    expect(result.off).toEqual({ totalCount: 1, edges: [{ node: { deviceId: quiet } }] });
    expect(result.site.devices.totalCount).toBe(2);
    expect(result.site.devices.edges.map((edge) => edge.node)).toEqual(
      [
        { deviceId: talking, online: true },
        { deviceId: quiet, online: false },
      ].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1)),
    );
    expect(result.site.offline).toEqual({ totalCount: 1, edges: [{ node: { deviceId: quiet } }] });
  });
});

describe('managing sites', () => {
  it('creates, lists, updates and resolves sites as nodes, auditing each change', async () => {
    const id = uniqueId('west');
    await createSite(id, 'gw-west-1');
    const duplicate = await gql<{ createSite: { __typename: string } }>(facilities, CREATE_SITE, {
      input: { id, name: 'again' },
    });
    expect(duplicate.createSite.__typename).toBe('Conflict');
    const badId = await gql<{ createSite: { __typename: string; field?: string } }>(facilities, CREATE_SITE, {
      input: { id: 'plant/+', name: 'wildcards' },
    });
    expect(badId.createSite).toMatchObject({ __typename: 'ValidationFailed', field: 'id' });

    const update = `mutation ($input: UpdateSiteInput!) {
      updateSite(input: $input) {
        __typename
        ... on MutationUpdateSiteSuccess { data { id name controllerId } }
        ... on SiteNotFound { siteId }
      }
    }`;
    type Updated = {
      updateSite: { __typename: string; data?: { id: string; name: string; controllerId: string | null } };
    };
    const renamed = await gql<Updated>(facilities, update, {
      input: { id, name: 'West plant', controllerId: null },
    });
    expect(renamed.updateSite.data).toMatchObject({ name: 'West plant', controllerId: null });
    const missing = await gql<Updated>(facilities, update, { input: { id: 'no-such-site', name: 'x' } });
    expect(missing.updateSite).toEqual({ __typename: 'SiteNotFound', siteId: 'no-such-site' });

    const refused = await graphql(service.app.urls.graphql, viewer, CREATE_SITE, {
      input: { id: uniqueId('x'), name: 'viewer may not' },
    });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const listed = await gql<{
      sites: { totalCount: number; edges: Array<{ node: { id: string; siteId: string } }> };
    }>(viewer, `{ sites(first: 500) { totalCount edges { node { id siteId } } } }`);
    expect(listed.sites.totalCount).toBe(listed.sites.edges.length);
    const node = listed.sites.edges.find((edge) => edge.node.siteId === id)!.node;
    const viaNode = await gql<{ node: { __typename: string; siteId: string; name: string } }>(
      viewer,
      `query ($id: ID!) { node(id: $id) { __typename ... on Site { siteId name } } }`,
      { id: node.id },
    );
    expect(viaNode.node).toEqual({ __typename: 'Site', siteId: id, name: 'West plant' });

    const actions = (await em().find(AuditEvent, { subject: `site:${id}` }, { orderBy: { seq: 'asc' } })).map(
      (event) => [event.action, event.details],
    );
    expect(actions).toEqual([
      ['site.created', { name: `Site ${id}`, controllerId: 'gw-west-1' }],
      [
        'site.updated',
        { name: { from: `Site ${id}`, to: 'West plant' }, controllerId: { from: 'gw-west-1', to: null } },
      ],
    ]);
  });

  it('holds its lists to the page cap like every connection, with null cursors on an empty page', async () => {
    const id = uniqueId('empty');
    await createSite(id);
    for (const query of [
      '{ sites(first: 501) { totalCount } }',
      `{ site(id: "${id}") { devices(first: 501) { totalCount } } }`,
    ]) {
      const { body } = await graphql(service.app.urls.graphql, viewer, query);
      expect(body.errors?.[0]?.extensions, query).toMatchObject({ code: 'PAGE_SIZE_EXCEEDED', max: 500 });
    }
    const empty = await gql<{ site: { devices: { edges: unknown[]; pageInfo: Record<string, unknown> } } }>(
      viewer,
      `query ($id: String!) { site(id: $id) { devices(first: 10) { edges { cursor } pageInfo { startCursor endCursor } } } }`,
      { id },
    );
    expect(empty.site.devices).toEqual({ edges: [], pageInfo: { startCursor: null, endCursor: null } });
  });
});

describe('REST heartbeat', () => {
  it('takes a heartbeat from a token of that site only, and refuses others as problem+json', async () => {
    const mine = uniqueId('mine');
    const other = uniqueId('other');
    await createSite(mine);
    await createSite(other);
    const otherToken = await siteToken(other);

    const wrongSite = await heartbeat(mine, otherToken);
    expect(wrongSite.status).toBe(403);
    expect(wrongSite.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await wrongSite.json()).toMatchObject({
      type: 'urn:fleetproof:problem:site-token-mismatch',
      status: 403,
    });
    const operator = await heartbeat(mine, await service.token('operator'));
    expect(operator.status).toBe(403);
    expect(await operator.json()).toMatchObject({ type: 'urn:fleetproof:problem:site-token-required' });
    const anonymous = await fetch(`${service.app.urls.http}/api/v1/cps/sites/${mine}/heartbeat`, {
      method: 'POST',
    });
    expect(anonymous.status).toBe(401);
    expect((await livenessOf(mine))?.lastHeartbeatAt).toBeNull();
    const refusals = await em().find(AuditEvent, {
      action: 'site.heartbeat-refused',
      subject: `site:${mine}`,
    });
    expect(refusals.map((event) => event.details)).toEqual(
      expect.arrayContaining([
        { reason: 'site-token-mismatch', tokenSite: other },
        { reason: 'site-token-required', tokenSite: null },
      ]),
    );

    const accepted = await heartbeat(other, otherToken);
    expect(accepted.status).toBe(200);
    expect(await accepted.json()).toEqual({
      site_id: other,
      liveness: 'LIVE',
      received_at: clock.now().toISOString(),
    });
    // A site token reads nothing.
    const { body } = await graphql(
      service.app.urls.graphql,
      otherToken,
      `
        {
          sites {
            totalCount
          }
        }
      `,
    );
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('issues site tokens through GraphQL, bound to one defined site', async () => {
    const site = uniqueId('gql');
    await createSite(site);
    const admin = await service.token('admin');
    const create = `mutation ($role: Role!, $site: String) {
      createApiToken(name: "controller", role: $role, site: $site) {
        __typename
        ... on MutationCreateApiTokenSuccess { data { token apiToken { role siteId } } }
        ... on ValidationFailed { field }
      }
    }`;
    type Created = {
      createApiToken: {
        __typename: string;
        field?: string;
        data?: { token: string; apiToken: { role: string; siteId: string | null } };
      };
    };
    const missing = await gql<Created>(admin, create, { role: 'SITE' });
    expect(missing.createApiToken).toEqual({ __typename: 'ValidationFailed', field: 'site' });
    const created = await gql<Created>(admin, create, { role: 'SITE', site });
    expect(created.createApiToken.data?.apiToken).toEqual({ role: 'SITE', siteId: site });
    expect((await heartbeat(site, created.createApiToken.data!.token)).status).toBe(200);
  });

  it('refuses a site token for a site that is not defined', async () => {
    await expect(
      service.services.tokens.create(em(), { name: 'x', role: 'site', siteId: 'not-defined', actor: 'test' }),
    ).rejects.toMatchObject({ field: 'site' });
    await expect(
      service.services.tokens.create(em(), {
        name: 'x',
        role: 'viewer',
        siteId: 'not-defined',
        actor: 'test',
      }),
    ).rejects.toMatchObject({ field: 'site' });
  });
});

describe('MQTT heartbeat and presence on the embedded broker', () => {
  it("records the controller's heartbeat, refuses another device's, and marks devices seen", async () => {
    const controller = await OpensslDevice.enroll(service, uniqueId('gw'));
    const intruder = await OpensslDevice.enroll(service, uniqueId('plc'));
    devices.push(controller, intruder);
    const site = uniqueId('mqtt-site');
    await createSite(site, controller.deviceId);

    await controller.client.publishAsync(`cps/site/${site}/heartbeat`, '{"software_version":"2.4.1"}', {
      qos: 1,
    });
    const live = await until(
      () => livenessOf(site),
      (value) => value?.liveness === 'LIVE',
    );
    expect(live?.lastHeartbeatAt).toBe(clock.now().toISOString());

    // Telemetry (any message of its own) marks the controller seen.
    await controller.client.publishAsync(`cps/telemetry/${controller.deviceId}`, '{"temperature":20}', {
      qos: 1,
    });
    await until(
      async () => {
        await service.services.presence.flush(em());
        return deviceView(controller.deviceId);
      },
      (view) => view.online,
    );

    // Another device may not keep the site alive: the broker drops the message and the connection.
    clock.advance(70 * SECOND);
    const dropped = closed(intruder.client);
    intruder.client.publish(`cps/site/${site}/heartbeat`, '{}', { qos: 1 });
    await dropped;
    expect((await livenessOf(site))?.liveness).toBe('STALE');
  });
});

describe.runIf(process.env.MQTT_URL)('MQTT heartbeat over an external broker', () => {
  let external: TestService;

  beforeAll(async () => {
    external = await startTestService({ mqtt: 'env', clock, env: LIVENESS_ENV });
  });

  afterAll(async () => {
    await external?.close();
  });

  it('records a heartbeat published on the site topic', async () => {
    const site = uniqueId('mosq');
    await external.services.sites.create(
      external.services.database.orm.em.fork(),
      { id: site, name: site },
      'test',
    );
    const publisher = await mqtt.connectAsync(process.env.MQTT_URL!, { clientId: uniqueId('controller') });
    try {
      // Until the service's own subscription is in place at the broker, a heartbeat reaches nobody.
      const recorded = await until(
        async () => {
          await publisher.publishAsync(`cps/site/${site}/heartbeat`, '{}', { qos: 1 });
          return external.services.sites.get(external.services.database.orm.em.fork(), site);
        },
        (value) => value.lastHeartbeatAt !== null,
      );
      expect(recorded).toMatchObject({ lastHeartbeatChannel: 'mqtt', lastHeartbeatAt: clock.now() });
      expect(external.services.sites.liveness(recorded)).toBe('LIVE');
    } finally {
      await publisher.endAsync();
    }
  });
});
