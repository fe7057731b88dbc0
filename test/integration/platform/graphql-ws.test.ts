import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let wsUrl: string;
let viewer: string;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  wsUrl = service.app.urls.graphql.replace(/^http/, 'ws');
  viewer = await service.token('viewer', 'ws-edges');
});

afterAll(async () => {
  await service?.close();
});

interface RawSocket {
  send(message: Record<string, unknown>): void;
  /** The next message the server sends, parsed. */
  nextMessage(): Promise<{ type: string } & Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A graphql-transport-ws socket driven message by message, to break the protocol on purpose. */
async function openRaw(): Promise<RawSocket> {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  const messages: Array<{ type: string } & Record<string, unknown>> = [];
  const waiting: Array<(message: { type: string } & Record<string, unknown>) => void> = [];
  socket.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString('utf8')) as { type: string } & Record<string, unknown>;
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else messages.push(message);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return {
    send: (message) => socket.send(JSON.stringify(message)),
    nextMessage: () =>
      messages.length > 0
        ? Promise.resolve(messages.shift()!)
        : new Promise((resolve) => waiting.push(resolve)),
    closed,
  };
}

const subscribe = (id: string) => ({
  id,
  type: 'subscribe',
  payload: { query: 'subscription { deviceEvents { deviceId } }' },
});

describe('graphql-ws protocol edges', () => {
  it('closes with 4408 when connection_init never arrives', async () => {
    const socket = await openRaw();
    const started = Date.now();
    const { code } = await socket.closed;
    expect(code).toBe(4408);
    // The server's init timeout (5 s), not an idle drop much later.
    expect(Date.now() - started).toBeLessThan(8_000);
  });

  it('closes with 4401 on a subscribe before any connection_init', async () => {
    const socket = await openRaw();
    socket.send(subscribe('early'));
    expect((await socket.closed).code).toBe(4401);
  });

  it('closes with 4401 on a subscribe sent after connection_init but before the ack', async () => {
    const socket = await openRaw();
    // The token check is a database read, so the subscribe lands while the server still decides.
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${viewer}` } });
    socket.send(subscribe('too-soon'));
    expect((await socket.closed).code).toBe(4401);
  });

  it('closes with 4429 on a second connection_init', async () => {
    const socket = await openRaw();
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${viewer}` } });
    expect((await socket.nextMessage()).type).toBe('connection_ack');
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${viewer}` } });
    expect((await socket.closed).code).toBe(4429);
  });

  it('closes with 4403 for a wrong token and for no token', async () => {
    for (const payload of [{ authorization: 'Bearer fpt_wrong' }, {}]) {
      const socket = await openRaw();
      socket.send({ type: 'connection_init', payload });
      expect((await socket.closed).code).toBe(4403);
    }
  });

  it('delivers to an admin subscriber and closes with 4403 once its token is revoked mid-stream', async () => {
    const admin = await service.token('admin', 'soc-admin');
    const closes: number[] = [];
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${admin}` },
      retryAttempts: 0,
      lazy: false,
      onNonLazyError: () => {}, // the 4403 close is asserted below, not printed
      on: { closed: (event) => closes.push((event as { code: number }).code) },
    });
    const received: Array<{ action: string; subject: string }> = [];
    const subscription = client.iterate<{ auditEvents: { action: string; subject: string } }>({
      query: 'subscription { auditEvents { ... on AuditEvent { action subject } } }',
    });
    const firstEvent = (async () => {
      for await (const result of subscription) {
        if (result.data) received.push(result.data.auditEvents);
        if (received.length >= 1) return;
      }
    })();
    // Subscription registration is asynchronous; keep creating tokens until one event arrives.
    const deadline = Date.now() + 10_000;
    while (received.length === 0 && Date.now() < deadline) {
      await service.token('viewer', 'trigger');
      await Promise.race([firstEvent, new Promise((resolve) => setTimeout(resolve, 200))]);
    }
    expect(received[0]?.action).toBe('token.created');

    const tokenId = (await service.services.tokens.authenticate(
      service.services.database.orm.em.fork(),
      admin,
    ))!.tokenId;
    await service.services.tokens.revoke(service.services.database.orm.em.fork(), {
      id: tokenId,
      actor: 'test',
    });
    const revokedAt = Date.now();
    while (closes.length === 0 && Date.now() - revokedAt < 10_000)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(closes[0]).toBe(4403);
    // "Within seconds": the socket re-checks its token every 2 s.
    expect(Date.now() - revokedAt).toBeLessThan(5_000);
    await client.dispose();
  });
});
