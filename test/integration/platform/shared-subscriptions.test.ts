import { randomBytes } from 'node:crypto';
import type { FormattedExecutionResult } from 'graphql';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttestationDecidedEvent } from '../../../src/shared/events.js';
import { LiveFeed, wsClient } from '../../support/live-feed.js';
import { startTestService, type TestService } from '../../support/service.js';
import { readEventStreamUntil, sseSubscription } from '../../support/sse.js';
import { until } from '../../support/until.js';

let service: TestService;
const run = randomBytes(2).toString('hex');
const siteA = `shared-a-${run}`;
const siteB = `shared-b-${run}`;
const deviceOf = (site: string) => `${site}-dev`;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  // Only the feeds' own statements may be counted: the background passes stop here.
  await service.scheduler.stop();
  await service.riskScheduler.stop();
  await service.services.inventory.import(
    service.services.database.orm.em.fork(),
    [siteA, siteB].map((site) => ({ device_id: deviceOf(site), device_type: 'PLC', site })),
    'test',
  );
});

afterAll(async () => {
  await service?.close();
});

const FEED = `subscription Feed($site: String) {
  attestationEvents(filter: { site: $site }) {
    __typename
    ... on AttestationResult { cursor deviceId device { deviceId } }
    ... on MissedEvents { after dropped }
  }
}`;

interface FeedItem {
  __typename: string;
  deviceId?: string;
  cursor?: string;
  device?: { deviceId: string };
}

let seq = 9_000_000;

/** Publishes on the service's real event bus, as a committed decision would. */
function publishFor(site: string): string {
  seq += 1;
  const event: AttestationDecidedEvent = {
    seq: String(seq),
    challengeId: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
    deviceId: deviceOf(site),
    siteId: site,
    outcome: 'PASS',
    reasons: [],
    nonceMatch: true,
    certChainValid: true,
    signatureValid: true,
    firmwareHash: null,
    timestamp: null,
    receivedAt: null,
    latencyMs: 3,
    riskScore: 0,
    status: 'VERIFIED',
    decidedAt: new Date().toISOString(),
  };
  service.services.pubsub.publish('attestation.decided', event);
  return event.seq;
}

async function gauge(name: string, subscription: string): Promise<number> {
  const text = await (await fetch(`${service.app.urls.http}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith(`${name}{subscription="${subscription}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

const executions = () => gauge('fleetproof_graphql_subscription_executions', 'attestationEvents');
const subscribers = () => gauge('fleetproof_graphql_subscription_subscribers', 'attestationEvents');

function feed(client: Client, site: string): LiveFeed<FeedItem> {
  return new LiveFeed<FeedItem>(
    client,
    { query: FEED, variables: { site } },
    (data: { attestationEvents: FeedItem }) => data.attestationEvents,
  );
}

describe('subscribers that ask the same', () => {
  it('share one execution per event; another filter or another role has its own', async () => {
    const admins = await Promise.all([1, 2, 3].map((n) => service.token('admin', `shared-admin-${n}`)));
    const viewer = await service.token('viewer', 'shared-viewer');
    const clients = [...admins.map((token) => wsClient(service.app.urls.graphql, token))];
    const viewerClient = wsClient(service.app.urls.graphql, viewer);
    const sameA = clients.map((client) => feed(client, siteA));
    const otherSite = feed(clients[0]!, siteB);
    const otherRole = feed(viewerClient, siteA);
    const onA = [...sameA, otherRole];
    try {
      for (const live of onA) {
        await live.untilLive(
          (item) => item.deviceId === deviceOf(siteA),
          () => Promise.resolve(void publishFor(siteA)),
        );
      }
      await otherSite.untilLive(
        (item) => item.deviceId === deviceOf(siteB),
        () => Promise.resolve(void publishFor(siteB)),
      );
      // Three admins on site A, one admin on site B, one viewer on site A: three executions.
      expect(await subscribers()).toBe(5);
      expect(await executions()).toBe(3);

      // One event for site A: each of its two executions reads the device once, for all four.
      const knex = service.services.database.orm.em.getConnection().getKnex();
      const deviceReads: string[] = [];
      const onQuery = (query: { sql: string }) => {
        if (/from "device"/.test(query.sql)) deviceReads.push(query.sql);
      };
      knex.on('query', onQuery);
      let delivered: FeedItem[];
      try {
        const eventSeq = publishFor(siteA);
        delivered = await Promise.all(onA.map((live) => live.waitFor((item) => isSeq(item, eventSeq))));
      } finally {
        knex.off('query', onQuery);
      }
      expect(delivered.map((item) => item.device?.deviceId)).toEqual(onA.map(() => deviceOf(siteA)));
      expect(deviceReads).toHaveLength(2);
      // The site B subscriber saw none of the site A events.
      expect(otherSite.received.every((item) => item.deviceId === deviceOf(siteB))).toBe(true);

      // Leaving: an execution ends with its last subscriber, not before.
      await sameA[0]!.close();
      await sameA[1]!.close();
      await until(subscribers, (count) => count === 3, 5_000);
      expect(await executions()).toBe(3);
      const eventSeq = publishFor(siteA);
      await sameA[2]!.waitFor((item) => isSeq(item, eventSeq));
      await sameA[2]!.close();
      await until(executions, (count) => count === 2, 5_000);
    } finally {
      for (const live of [...sameA, otherSite, otherRole]) await live.close();
      for (const client of [...clients, viewerClient]) await client.dispose();
    }
    await until(
      async () => [await executions(), await subscribers()],
      ([running, listening]) => running === 0 && listening === 0,
      5_000,
    );
  });

  it('refuses a role that may not read the feed even while another role shares an execution of it', async () => {
    const admin = wsClient(service.app.urls.graphql, await service.token('admin', 'audit-admin'));
    const viewer = wsClient(service.app.urls.graphql, await service.token('viewer', 'audit-viewer'));
    const query = 'subscription { auditEvents { __typename ... on AuditEvent { action } } }';
    const adminFeed = new LiveFeed<{ action?: string }>(
      admin,
      { query },
      (data: { auditEvents: { action?: string } }) => data.auditEvents,
    );
    try {
      await adminFeed.untilLive(
        (item) => item.action === 'token.created',
        async (attempt) => void (await service.token('viewer', `audit-probe-${attempt}`)),
      );
      const refused = (await viewer.iterate({ query }).next()) as IteratorResult<FormattedExecutionResult>;
      if (refused.done) throw new Error('the refused subscription sent no answer');
      expect(refused.value.data ?? null).toBeNull();
      expect(refused.value.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    } finally {
      await adminFeed.close();
      await admin.dispose();
      await viewer.dispose();
    }
  });

  it('serves SSE subscribers from the same execution and lets them go when they disconnect', async () => {
    const admin = await service.token('admin', 'shared-sse');
    const ws = wsClient(service.app.urls.graphql, admin);
    const live = feed(ws, siteA);
    const controller = new AbortController();
    try {
      await live.untilLive(
        (item) => item.deviceId === deviceOf(siteA),
        () => Promise.resolve(void publishFor(siteA)),
      );
      const response = await sseSubscription(
        service.app.urls.graphql,
        admin,
        { query: FEED, variables: { site: siteA } },
        controller.signal,
      );
      expect(response.status).toBe(200);
      const text = await readEventStreamUntil(
        response,
        () => publishFor(siteA),
        (read) => read.includes(deviceOf(siteA)),
      );
      expect(text).toContain(`"device":{"deviceId":"${deviceOf(siteA)}"}`);
      expect(await executions()).toBe(1);
      expect(await subscribers()).toBe(2);
      controller.abort();
      await until(subscribers, (count) => count === 1, 5_000);
      expect(await executions()).toBe(1);
    } finally {
      controller.abort();
      await live.close();
      await ws.dispose();
    }
  });
});

/** Whether a delivered item is the result of the event with sequence `eventSeq` (its cursor says). */
function isSeq(item: FeedItem, eventSeq: string): boolean {
  return (
    item.cursor !== undefined && Buffer.from(item.cursor, 'base64url').toString().endsWith(`:${eventSeq}`)
  );
}
