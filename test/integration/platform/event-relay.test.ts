import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpensslDevice } from '../../support/attestation-device.js';
import { freshDatabaseUrl } from '../../support/database.js';
import { LiveFeed, wsClient } from '../../support/live-feed.js';
import { startRedis } from '../../support/processes.js';
import { graphqlData, startTestService, type TestService } from '../../support/service.js';

const hasRedis = spawnSync('redis-server', ['--version']).error === undefined;

// Two instances on one database and one Redis, as behind a load balancer.
describe.skipIf(!hasRedis)('events across service instances (REDIS_URL)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let dataDir: string;
  let a: TestService;
  let b: TestService;

  beforeAll(async () => {
    redis = await startRedis();
    const databaseUrl = await freshDatabaseUrl();
    // One CA for both, as instances of one deployment share it.
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-relay-'));
    const options = { mqtt: 'embedded', databaseUrl, dataDir, env: { REDIS_URL: redis.url } } as const;
    a = await startTestService(options);
    b = await startTestService(options);
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
    redis?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('streams a change made through one instance to a GraphQL subscriber of the other', async () => {
    const admin = await a.token('admin', 'relay-admin');
    const facilities = await b.token('facilities', 'relay-facilities');
    const client = wsClient(a.app.urls.graphql, admin);
    const feed = new LiveFeed(
      client,
      { query: 'subscription { auditEvents { ... on AuditEvent { action subject } } }' },
      (data: { auditEvents: { action: string; subject: string } }) => data.auditEvents,
    );
    const register = (deviceId: string) =>
      graphqlData(
        b.app.urls.graphql,
        facilities,
        `mutation ($id: String!) { registerDevice(input: { deviceId: $id, deviceType: PLC }) { __typename } }`,
        { id: deviceId },
      );
    // Registered through B, audited on B, seen by the subscriber on A.
    await feed.untilLive(
      (event) => event.subject.startsWith('device:relay-probe-'),
      async (attempt) => {
        await register(`relay-probe-${attempt}`);
      },
    );
    await register('relay-device');
    expect(await feed.waitFor((event) => event.subject === 'device:relay-device')).toEqual({
      action: 'device.created',
      subject: 'device:relay-device',
    });
    await feed.close();
    await client.dispose();
  });

  it('drops a device revoked through one instance from the broker of the other at once', async () => {
    const device = await OpensslDevice.enroll(b, 'relay-revoked');
    try {
      const closed = new Promise<void>((resolve) => device.client.once('close', () => resolve()));
      await a.services.lifecycle.approve(a.services.database.orm.em.fork(), device.deviceId, 'test');
      expect(device.client.connected).toBe(true);
      await a.services.lifecycle.revoke(
        a.services.database.orm.em.fork(),
        device.deviceId,
        'key found on a forum',
        'KEY_COMPROMISE',
        'test',
      );
      // Its certificate is checked again only when it reconnects: without the relay B keeps it on.
      await closed;
    } finally {
      await device.dispose();
    }
  });

  it('gives work done once per event only to the instance where the event happened', async () => {
    const everywhere = a.services.pubsub.subscribe('site.changed');
    const own = a.services.pubsub.subscribeOwn('site.changed');
    b.services.pubsub.publish('site.changed', { siteId: 'from-b', change: 'created' });
    a.services.pubsub.publish('site.changed', { siteId: 'from-a', change: 'created' });
    // A's own event is dispatched at once; B's arrives through Redis.
    expect((await everywhere.next()).value).toEqual({ siteId: 'from-a', change: 'created' });
    expect((await everywhere.next()).value).toEqual({ siteId: 'from-b', change: 'created' });
    a.services.pubsub.publish('site.changed', { siteId: 'from-a-again', change: 'updated' });
    expect((await own.next()).value).toEqual({ siteId: 'from-a', change: 'created' });
    expect((await own.next()).value).toEqual({ siteId: 'from-a-again', change: 'updated' });
    // And an instance never receives its own events a second time through Redis.
    expect((await everywhere.next()).value).toEqual({ siteId: 'from-a-again', change: 'updated' });
    b.services.pubsub.publish('site.changed', { siteId: 'from-b-last', change: 'updated' });
    expect((await everywhere.next()).value).toEqual({ siteId: 'from-b-last', change: 'updated' });
    await everywhere.return?.();
    await own.return?.();
  });
});
