import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEventStreamUntil, sseSubscription } from '../../support/sse.js';
import { graphql, postGraphQL, startTestService, type TestService } from '../../support/service.js';

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

describe('GraphQL query execution', () => {
  const DOCUMENT = `
    query Who { viewer { name } }
    query Info { serviceInfo { database } }
    query Page($first: Int!) { devices(first: $first) { totalCount } }`;

  const run = (token: string, operationName: string, variables?: Record<string, unknown>) =>
    postGraphQL(service.app.urls.graphql, token, { query: DOCUMENT, operationName, variables });

  it('runs the operation named in a document that holds several, every time', async () => {
    const token = await service.token('viewer', 'several-operations');
    // Each operation twice, interleaved (interpreted, then compiled): code is kept per document and operation.
    for (let round = 0; round < 2; round += 1) {
      expect(await run(token, 'Who')).toEqual({
        status: 200,
        body: { data: { viewer: { name: 'several-operations' } } },
      });
      expect(await run(token, 'Info')).toEqual({
        status: 200,
        body: { data: { serviceInfo: { database: 'postgresql' } } },
      });
      expect(await run(token, 'Page', { first: 1 })).toEqual({
        status: 200,
        body: { data: { devices: { totalCount: 0 } } },
      });
    }
  });

  it('refuses variables that do not coerce before anything runs, as graphql-js does', async () => {
    const token = await service.token('viewer');
    // A document is compiled on its second run: the refusals below are of compiled code.
    for (let warm = 0; warm < 2; warm += 1) expect((await run(token, 'Page', { first: 1 })).status).toBe(200);
    const missing = await run(token, 'Page', {});
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({
      errors: [
        expect.objectContaining({ message: 'Variable "$first" of required type "Int!" was not provided.' }),
      ],
    });
    // graphql-js' own answer, which clients already handle, whether or not the query is compiled.
    const wrongType = await run(token, 'Page', { first: 'ten' });
    expect(wrongType.body).toEqual({
      errors: [expect.objectContaining({ message: 'Int cannot represent non-integer value: "ten"' })],
    });
  });
});

describe('GraphQL subscriptions over SSE', () => {
  it('streams audit events to an admin over text/event-stream with the same bearer auth', async () => {
    const admin = await service.token('admin', 'sse-admin');
    const controller = new AbortController();
    const response = await sseSubscription(
      service.app.urls.graphql,
      admin,
      { query: 'subscription { auditEvents { ... on AuditEvent { action subject } } }' },
      controller.signal,
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const text = await readEventStreamUntil(
      response,
      () => service.token('viewer', 'sse-trigger'),
      (read) => read.includes('token.created'),
    );
    controller.abort();
    expect(text).toMatch(/data: \{"data":\{"auditEvents":\{"action":"token.created"/);

    const anonymous = await sseSubscription(service.app.urls.graphql, null, {
      query: 'subscription { auditEvents { __typename } }',
    });
    expect(await anonymous.text()).toContain('UNAUTHENTICATED');
  });
});
