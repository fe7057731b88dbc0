import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import manifest from '../../../src/client/generated/persisted-documents.json' with { type: 'json' };
import { ViewerDocument, createFleetClient } from '../../../src/client/index.js';
import { postGraphQL, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let viewer: string;
let admin: string;

/** The manifest id of the repository's operation named `name`. */
function idOf(name: string): string {
  const entry = Object.entries(manifest).find(([, text]) =>
    new RegExp(`\\b(query|mutation|subscription) ${name}\\b`).test(text),
  );
  if (!entry) throw new Error(`no persisted operation ${name}`);
  return entry[0];
}

const post = (token: string, body: Record<string, unknown>) =>
  postGraphQL(service.app.urls.graphql, token, body);

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', env: { FLEETPROOF_GRAPHQL_PERSISTED_ONLY: 'true' } });
  viewer = await service.token('viewer', 'persisted-viewer');
  admin = await service.token('admin', 'persisted-admin');
});

afterAll(async () => {
  await service?.close();
});

describe('persisted-only mode', () => {
  it('refuses a document that is not on the allow-list, before running it', async () => {
    for (const query of ['{ viewer { name role } }', '{ __schema { types { name } } }', 'not graphql']) {
      const { status, body } = await post(viewer, { query });
      expect(status).toBe(400);
      expect(body.data).toBeUndefined();
      expect(body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_ONLY');
    }
  });

  it('runs an allow-listed operation by documentId, by Apollo hash, over GET, and as its exact text', async () => {
    const expected = { viewer: { name: 'persisted-viewer', role: 'VIEWER' } };
    const id = idOf('Viewer');
    expect((await post(viewer, { documentId: id })).body).toEqual({ data: expected });
    const apollo = { persistedQuery: { version: 1, sha256Hash: id.replace(/^sha256:/, '') } };
    expect((await post(viewer, { extensions: apollo })).body).toEqual({ data: expected });

    const url = new URL(service.app.urls.graphql);
    url.searchParams.set('documentId', id);
    const got = await fetch(url, {
      headers: {
        accept: 'application/graphql-response+json',
        authorization: `Bearer ${viewer}`,
        'x-graphql-yoga-csrf': '1',
      },
    });
    expect(await got.json()).toEqual({ data: expected });

    // The typed SDK sends the codegen document's text, which is on the list.
    const client = createFleetClient({ url: service.app.urls.graphql, token: viewer });
    expect(await client.query(ViewerDocument)).toEqual(expected);
    await client.close();
  });

  it('answers an unknown id with PERSISTED_QUERY_NOT_FOUND', async () => {
    const { status, body } = await post(viewer, { documentId: `sha256:${'0'.repeat(64)}` });
    expect(status).toBe(400);
    expect(body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
  });

  it('holds over graphql-ws too: an arbitrary subscription is refused, an allow-listed one delivers', async () => {
    const client = createClient({
      url: service.app.urls.graphql.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${admin}` },
      retryAttempts: 0,
      lazy: false,
    });
    const refused = client.iterate({ query: 'subscription { auditEvents { __typename } }' });
    await expect(refused.next()).rejects.toSatisfy(
      (errors: unknown) =>
        Array.isArray(errors) &&
        (errors[0] as { extensions?: { code?: string } }).extensions?.code === 'PERSISTED_QUERY_ONLY',
    );

    const live = client.iterate({
      query: '',
      extensions: { persistedQuery: { sha256Hash: idOf('AuditEventsLive') } },
    });
    const first = live.next();
    // Give the subscription time to be registered, then cause an audit event.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await service.token('viewer', 'persisted-trigger');
    const event = (await first).value as { data: { auditEvents: { action: string; subject: string } } };
    expect(event.data.auditEvents).toMatchObject({ action: 'token.created' });
    await live.return?.();
    await client.dispose();
  });
});
