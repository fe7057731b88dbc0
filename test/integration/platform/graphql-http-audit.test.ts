import { auditServer } from 'graphql-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let token: string;

beforeAll(async () => {
  service = await startTestService();
  token = await service.token('viewer', 'graphql-http-audit');
});

afterAll(async () => {
  await service?.close();
});

/** The audits know neither authentication nor CSRF prevention: add what a real client sends. */
function auditWith(extraHeaders: Record<string, string>) {
  const fetchFn = (input: RequestInfo | URL, init: RequestInit = {}) =>
    fetch(input, {
      ...init,
      headers: {
        ...(init.headers as Record<string, string>),
        authorization: `Bearer ${token}`,
        ...extraHeaders,
      },
    });
  return auditServer({ url: service.app.urls.graphql, fetchFn });
}

const notOk = (results: Awaited<ReturnType<typeof auditServer>>) =>
  results.filter((result) => result.status !== 'ok').map((result) => `${result.status} ${result.id}`);

describe('GraphQL over HTTP', () => {
  it('passes every audit of the graphql-http package against the real server', async () => {
    const results = await auditWith({ 'x-graphql-yoga-csrf': '1' });
    expect(notOk(results)).toEqual([]);
    expect(results.length).toBeGreaterThan(50);
  });

  it('misses only three MAYs (GETs) for a client that does not send the CSRF header', async () => {
    // CSRF prevention refuses a GET without a preflight-only header; every MUST and SHOULD still holds.
    expect(notOk(await auditWith({}))).toEqual(['notice 5A70', 'notice D6D5', 'notice 6A70']);
  });
});
