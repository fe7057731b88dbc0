import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});

afterAll(async () => {
  await service?.close();
});

describe('GraphQL authentication', () => {
  it('gives an unauthenticated caller nothing but an error', async () => {
    const { status, body } = await graphql(
      service.app.urls.graphql,
      undefined,
      '{ serviceInfo { version } }',
    );
    expect(status).toBe(401);
    expect(body.data).toBeUndefined();
    expect(body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('refuses an unknown token the same way', async () => {
    const { status, body } = await graphql(
      service.app.urls.graphql,
      'fpt_not-a-real-token',
      '{ viewer { name } }',
    );
    expect(status).toBe(401);
    expect(body.data).toBeUndefined();
  });

  it('lets a viewer token query', async () => {
    const token = await service.token('viewer', 'dashboard');
    const { status, body } = await graphql<{
      viewer: { name: string; role: string };
      serviceInfo: { database: string };
    }>(
      service.app.urls.graphql,
      token,
      '{ viewer { name role } serviceInfo { database rootCaFingerprint } }',
    );
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    expect(body.data?.viewer).toEqual({ name: 'dashboard', role: 'VIEWER' });
    expect(body.data?.serviceInfo.database).toBe('postgresql');
  });

  it('checks roles in the schema: a viewer cannot create tokens', async () => {
    const token = await service.token('viewer');
    const { body } = await graphql(
      service.app.urls.graphql,
      token,
      'mutation { createApiToken(name: "x", role: ADMIN) { __typename } }',
    );
    expect(body.data?.createApiToken ?? null).toBeNull();
    expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('returns validation failures as typed results', async () => {
    const token = await service.token('admin');
    const { body } = await graphql<{ createApiToken: { __typename: string; field?: string } }>(
      service.app.urls.graphql,
      token,
      'mutation { createApiToken(name: "   ", role: VIEWER) { __typename ... on ValidationFailed { field } } }',
    );
    expect(body.data?.createApiToken).toEqual({ __typename: 'ValidationFailed', field: 'name' });
  });
});

describe('GraphQL subscriptions over SSE', () => {
  it('streams audit events to an admin over text/event-stream with the same bearer auth', async () => {
    const admin = await service.token('admin', 'sse-admin');
    const controller = new AbortController();
    const response = await fetch(service.app.urls.graphql, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        authorization: `Bearer ${admin}`,
      },
      body: JSON.stringify({
        query: 'subscription { auditEvents { ... on AuditEvent { action subject } } }',
      }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    let text = '';
    const deadline = Date.now() + 10_000;
    while (!text.includes('token.created') && Date.now() < deadline) {
      await service.token('viewer', 'sse-trigger');
      const chunk = await Promise.race([
        reader.read(),
        new Promise<undefined>((resolve) => setTimeout(resolve, 200)),
      ]);
      if (chunk && !chunk.done) text += Buffer.from(chunk.value).toString();
    }
    controller.abort();
    expect(text).toMatch(/data: \{"data":\{"auditEvents":\{"action":"token.created"/);

    const anonymous = await fetch(service.app.urls.graphql, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription { auditEvents { __typename } }' }),
    });
    expect(await anonymous.text()).toContain('UNAUTHENTICATED');
  });
});
