import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AuditRecordedEvent } from '../../../src/shared/events.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

const BUFFER = 64;

let service: TestService;
let wsUrl: string;
let admin: string;

beforeAll(async () => {
  service = await startTestService({
    mqtt: 'embedded',
    env: { FLEETPROOF_SUBSCRIPTION_BUFFER: String(BUFFER) },
  });
  wsUrl = service.app.urls.graphql.replace(/^http/, 'ws');
  admin = await service.token('admin', 'feeds');
});

afterAll(async () => {
  await service?.close();
});

const AUDIT_FEED = `subscription { auditEvents {
  __typename ... on AuditEvent { seq cursor action details } ... on MissedEvents { after dropped } } }`;

type FeedItem =
  | { __typename: 'AuditEvent'; seq: string; cursor: string; action: string }
  | { __typename: 'MissedEvents'; after: string | null; dropped: number };

interface BackfillPage {
  edges: Array<{ node: { seq: string } }>;
  pageInfo: { hasPreviousPage: boolean; startCursor: string | null };
}

/** A graphql-transport-ws subscriber on a raw socket, so the test can stop it reading at the TCP level. */
async function rawSubscriber(query: string) {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  const items: FeedItem[] = [];
  let acknowledged!: () => void;
  const ack = new Promise<void>((resolve) => (acknowledged = resolve));
  socket.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString('utf8')) as {
      type: string;
      payload?: { data?: { auditEvents: FeedItem } };
    };
    if (message.type === 'connection_ack') acknowledged();
    if (message.type === 'next' && message.payload?.data) items.push(message.payload.data.auditEvents);
  });
  await new Promise<void>((resolve, reject) => socket.once('open', resolve).once('error', reject));
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${admin}` } }));
  await ack;
  socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
  return { socket, items };
}

/** Publishes on the service's real event bus, as commits would. */
function publishAudit(from: number, to: number, padding: string): void {
  for (let seq = from; seq <= to; seq += 1) {
    const event: AuditRecordedEvent = {
      seq: String(seq),
      occurredAt: new Date().toISOString(),
      actor: 'test',
      action: 'test.flood',
      subject: `flood:${seq}`,
      details: { padding },
      hash: '0'.repeat(64),
    };
    service.services.pubsub.publish('audit.recorded', event);
  }
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${service.app.urls.http}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith(`${name}{subscription="auditEvents"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('subscription feeds', () => {
  it('never lets a subscriber that stops reading slow the others; it gets a gap marker it can resync from', async () => {
    const fast = await rawSubscriber(AUDIT_FEED);
    const slow = await rawSubscriber(AUDIT_FEED);
    // Subscribing has no acknowledgement: publish until both have seen an event.
    const padding = 'x'.repeat(8 * 1024);
    let seq = 0;
    while (fast.items.length === 0 || slow.items.length === 0) {
      seq += 1;
      publishAudit(seq, seq, padding);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const warmUp = seq;
    await new Promise((resolve) => setTimeout(resolve, 300)); // the last warm-up event, still in flight
    fast.items.length = 0;
    slow.items.length = 0;

    slow.socket.pause(); // stops reading from TCP: the server's writes to it back up
    const total = 3_000; // 24 MiB: far more than the socket buffers between the two ends
    // Bursts of half a buffer, each only once the reading subscriber has all before it: it must keep
    // getting every event at its own pace while the other one's socket is full.
    for (let from = warmUp + 1; from <= warmUp + total; from += BUFFER / 2) {
      const to = Math.min(from + BUFFER / 2 - 1, warmUp + total);
      publishAudit(from, to, padding);
      await until(() => fast.items.length >= to - warmUp, 20_000, 'the reading subscriber');
    }
    expect(fast.items.map((item) => (item.__typename === 'AuditEvent' ? Number(item.seq) : -1))).toEqual(
      Array.from({ length: total }, (_, index) => warmUp + 1 + index),
    );
    expect(await metric('fleetproof_graphql_subscription_overflows_total')).toBeGreaterThanOrEqual(1);

    // The stalled one resumes: what it gets plus what it was told it missed is everything, in order.
    slow.socket.resume();
    const accounted = () =>
      slow.items.reduce((sum, item) => sum + (item.__typename === 'MissedEvents' ? item.dropped : 1), 0);
    await until(() => accounted() === total, 60_000, 'the stalled subscriber to account for every event');
    const markers = slow.items.filter((item) => item.__typename === 'MissedEvents');
    expect(markers.length).toBeGreaterThanOrEqual(1);
    let previous: FeedItem | undefined;
    for (const item of slow.items) {
      if (item.__typename === 'MissedEvents') {
        // The marker names the last event delivered before the gap: resync with `after: <it>`.
        expect(item.after).toBe(previous?.__typename === 'AuditEvent' ? previous.cursor : 'an event first');
      }
      previous = item;
    }
    expect(await metric('fleetproof_graphql_subscription_dropped_events_total')).toBe(
      markers.reduce((sum, item) => sum + (item.__typename === 'MissedEvents' ? item.dropped : 0), 0),
    );
    fast.socket.close();
    slow.socket.close();
  });

  it('lets a dashboard subscribe first and backfill from the first event cursor with no gap', async () => {
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${admin}` },
      retryAttempts: 0,
    });
    const live: Array<{ seq: string; cursor: string }> = [];
    const subscription = client.iterate<{ auditEvents: FeedItem }>({ query: AUDIT_FEED });
    const reading = (async () => {
      for await (const result of subscription) {
        const item = result.data?.auditEvents;
        if (item?.__typename === 'AuditEvent' && item.action === 'token.created') live.push(item);
        if (item?.__typename === 'MissedEvents')
          throw new Error('a dashboard that reads must not miss events');
      }
    })();
    // Real audit events from real commits, before, during and after the subscription starts.
    let producing = true;
    const producer = (async () => {
      let count = 0;
      while (producing || count < 40) {
        await service.token('viewer', `backfill-${(count += 1)}`);
      }
      return count;
    })();
    await until(() => live.length > 0, 20_000, 'the first live event');
    const first = live[0]!;

    // Everything before the first live event, through the query, walking back from its cursor.
    const backfill: string[] = [];
    let before: string | null = first.cursor;
    while (before) {
      const { body } = await graphql<{ auditEvents: BackfillPage }>(
        service.app.urls.graphql,
        admin,
        `
          query ($before: String) {
            auditEvents(last: 100, before: $before) {
              edges {
                node {
                  seq
                }
              }
              pageInfo {
                hasPreviousPage
                startCursor
              }
            }
          }
        `,
        { before },
      );
      const page: BackfillPage = body.data!.auditEvents;
      backfill.unshift(...page.edges.map((edge) => edge.node.seq));
      before = page.pageInfo.hasPreviousPage ? page.pageInfo.startCursor : null;
    }
    producing = false;
    await producer;
    const last = await graphql<{ auditEvents: { edges: Array<{ node: { seq: string } }> } }>(
      service.app.urls.graphql,
      admin,
      '{ auditEvents(last: 1) { edges { node { seq } } } }',
    );
    const newest = Number(last.body.data!.auditEvents.edges[0]!.node.seq);
    await until(() => Number(live.at(-1)?.seq) >= newest, 20_000, 'the live feed to catch up');
    await subscription.return?.();
    await client.dispose();
    await reading;

    // Audit sequence numbers are gap-free: backfill then live must be exactly 1..newest.
    const seen = [...backfill, ...live.map((event) => event.seq)].map(Number);
    expect(seen).toEqual(Array.from({ length: newest }, (_, index) => index + 1));
  });
});
