import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiToken } from '../../../src/auth/api-token.entity.js';
import { OPERATION_LIMITS } from '../../../src/graphql/limits.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let token: string;

beforeAll(async () => {
  service = await startTestService();
  token = await service.token('viewer', 'limits');
});

afterAll(async () => {
  await service?.close();
});

/** A valid selection on Query whose depth grows by two per level (Device <-> AttestationResult). */
function selections(levels: number): string {
  let inner = 'deviceId';
  for (let level = 0; level < levels; level += 1)
    inner = `deviceId lastAttestation { outcome device { ${inner} } }`;
  return `viewer { name } device(deviceId: "none") { ${inner} }`;
}

function deepQuery(levels: number, name = ''): string {
  return `query ${name} { ${selections(levels)} }`;
}

async function refused(query: string): Promise<boolean> {
  const { body } = await graphql(service.app.urls.graphql, token, query);
  return body.data === undefined && (body.errors?.length ?? 0) > 0;
}

describe('operation limits (checked before execution)', () => {
  it('accepts a dashboard-sized query and refuses one past the depth limit', async () => {
    expect(await refused(deepQuery(1))).toBe(false);
    expect(await refused(deepQuery(2))).toBe(false); // depth 6, like the deepest dashboard query
    expect(await refused(deepQuery(OPERATION_LIMITS.depth / 2))).toBe(true);
  });

  it('is not bypassed by an operation or fragment named __schema', async () => {
    expect(await refused(deepQuery(1, '__schema'))).toBe(false);
    expect(await refused(deepQuery(OPERATION_LIMITS.depth / 2, '__schema'))).toBe(true);
    const viaFragment = (levels: number) =>
      `query { ...__schema } fragment __schema on Query { ${selections(levels)} }`;
    expect(await refused(viaFragment(1))).toBe(false);
    expect(await refused(viaFragment(OPERATION_LIMITS.depth / 2))).toBe(true);
  });

  it('lets a full 500-row page through but refuses pages nested in pages (cost)', async () => {
    expect(
      await refused('{ attestationResults(first: 500) { edges { cursor node { outcome reasons } } } }'),
    ).toBe(false);
    expect(
      await refused(
        '{ devices(first: 500) { edges { node { attestations(first: 500) { edges { node { outcome } } } } } } }',
      ),
    ).toBe(true);
  });

  it('refuses too many aliases, directives and tokens, without telling the limit', async () => {
    const aliases = Array.from(
      { length: OPERATION_LIMITS.aliases + 1 },
      (_, index) => `a${index}: viewer { name }`,
    ).join(' ');
    expect(await refused(`{ ${aliases} }`)).toBe(true);
    const directives = Array.from(
      { length: OPERATION_LIMITS.directives + 1 },
      () => '@include(if: true)',
    ).join(' ');
    expect(await refused(`{ viewer ${directives} { name } }`)).toBe(true);
    const tokens = Array.from({ length: OPERATION_LIMITS.tokens }, () => 'name').join(' ');
    const { body } = await graphql(service.app.urls.graphql, token, `{ viewer { ${tokens} } }`);
    expect(body.data).toBeUndefined();
    expect(JSON.stringify(body.errors)).not.toContain(String(OPERATION_LIMITS.tokens));
  });
});

describe('CSRF prevention', () => {
  const get = (headers: Record<string, string>) =>
    fetch(`${service.app.urls.graphql}?query=${encodeURIComponent('{ viewer { name } }')}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/graphql-response+json', ...headers },
    });

  it('refuses a GET without a preflight-only header and runs it with one', async () => {
    const bare = await get({});
    expect(bare.status).toBe(403);
    expect(JSON.stringify(await bare.json())).toContain('CSRF');
    for (const header of ['x-graphql-yoga-csrf', 'apollo-require-preflight']) {
      const allowed = await get({ [header]: '1' });
      expect(allowed.status).toBe(200);
      expect(await allowed.json()).toEqual({ data: { viewer: { name: 'limits' } } });
    }
    // GraphiQL is a page a browser navigates to, not an operation: it still loads.
    const graphiql = await fetch(service.app.urls.graphql, { headers: { accept: 'text/html' } });
    expect(graphiql.status).toBe(200);
    expect(await graphiql.text()).toContain('fleetproof');
  });

  it('refuses a form-like POST (what a cross-site form can send) before it executes', async () => {
    const admin = await service.token('admin', 'csrf-admin');
    const forged = JSON.stringify({
      query: 'mutation { createApiToken(name: "forged", role: ADMIN) { __typename } }',
    });
    const form = new FormData();
    form.set('operations', forged);
    for (const body of [forged, new URLSearchParams({ query: 'x' }), form]) {
      const response = await fetch(service.app.urls.graphql, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}` },
        body,
      });
      expect(response.status).toBe(403);
    }
    const em = service.services.database.orm.em.fork();
    expect(await em.count(ApiToken, { name: 'forged' })).toBe(0);
  });
});

describe('production mode', () => {
  it('refuses introspection and oversized bodies', async () => {
    const production = await startTestService({ env: { NODE_ENV: 'production' } });
    try {
      const viewer = await production.token('viewer');
      const introspection = await graphql(
        production.app.urls.graphql,
        viewer,
        '{ __schema { types { name } } }',
      );
      expect(introspection.body.data).toBeUndefined();
      expect(JSON.stringify(introspection.body.errors)).toContain('introspection');
      const ok = await graphql(production.app.urls.graphql, viewer, '{ viewer { name } }');
      expect(ok.body.errors).toBeUndefined();
      const huge = await fetch(production.app.urls.graphql, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${viewer}` },
        body: JSON.stringify({ query: `{ viewer { name } } # ${'x'.repeat(1024 * 1024)}` }),
      });
      expect(huge.status).toBe(413);
      const chunked = await new Promise<number>((resolve, reject) => {
        const request = http.request(
          production.app.urls.graphql,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${viewer}` },
          },
          (response) => {
            response.resume();
            resolve(response.statusCode ?? 0);
          },
        );
        request.once('error', reject);
        request.write('{"query":"{ viewer { name } }"');
        request.end('}');
      });
      expect(chunked).toBe(411);
    } finally {
      await production.close();
    }
  });
});
