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

describe('GraphQL over HTTP', () => {
  it('passes every audit of the graphql-http package against the real server', async () => {
    // The audits do not know about authentication: every request carries a viewer token.
    const fetchFn = (input: RequestInfo | URL, init: RequestInit = {}) =>
      fetch(input, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` },
      });
    const results = await auditServer({ url: service.app.urls.graphql, fetchFn });
    const notOk = results
      .filter((result) => result.status !== 'ok')
      .map((result) => `${result.status} ${result.id} ${result.name}`);
    expect(notOk).toEqual([]);
    expect(results.length).toBeGreaterThan(50);
  });
});
