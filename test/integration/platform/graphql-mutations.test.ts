import { randomUUID } from 'node:crypto';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ApiToken } from '../../../src/auth/api-token.entity.js';
import { startTestService, type TestService } from '../../support/service.js';

const LIMIT = 10;
const limits = {
  FLEETPROOF_MUTATION_RATE_PER_TOKEN: String(LIMIT),
  FLEETPROOF_MUTATION_RATE_WINDOW_S: '600',
};

let service: TestService;
/** A second instance on the same database: keys and budgets must be shared, not per process. */
let twin: TestService;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', env: limits });
  twin = await startTestService({
    mqtt: 'embedded',
    env: limits,
    databaseUrl: service.config.databaseUrl!,
    dataDir: service.dataDir,
  });
});

afterAll(async () => {
  await twin?.close();
  await service?.close();
});

interface Response {
  status: number;
  body: {
    data?: Record<string, unknown> | null;
    errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
    extensions?: Record<string, unknown>;
  };
}

async function mutate(
  url: string,
  token: string,
  query: string,
  variables: Record<string, unknown>,
  idempotencyKey?: string,
): Promise<Response> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables, ...(idempotencyKey ? { extensions: { idempotencyKey } } : {}) }),
  });
  return { status: response.status, body: (await response.json()) as Response['body'] };
}

const CREATE_TOKEN = `mutation ($name: String!) {
  createApiToken(name: $name, role: VIEWER) {
    __typename
    ... on MutationCreateApiTokenSuccess { data { token apiToken { id name } } }
    ... on RateLimited { retryAfterSeconds }
  }
}`;

const tokensNamed = (name: string) => service.services.database.orm.em.fork().count(ApiToken, { name });

async function keptKeys(key: string): Promise<Array<{ response: Buffer | null }>> {
  return service.services.database.orm.em
    .fork()
    .getConnection()
    .execute('select response from idempotency_key where key = ?', [key]);
}

describe('idempotent mutations (extensions.idempotencyKey)', () => {
  it('returns the first response to a retry, on either instance, without running the mutation again', async () => {
    const admin = await service.token('admin', 'idem-retry');
    const key = randomUUID();
    const first = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-1' }, key);
    expect(first.body.errors).toBeUndefined();
    const created = first.body.data?.createApiToken as { data: { token: string } };
    expect(created.data.token).toMatch(/^fpt_/);

    const retry = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-1' }, key);
    const elsewhere = await mutate(twin.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-1' }, key);
    for (const replayed of [retry, elsewhere]) {
      expect(replayed.status).toBe(200);
      expect(replayed.body.data).toEqual(first.body.data);
      expect(replayed.body.extensions).toEqual({ idempotentReplay: true });
    }
    expect(await tokensNamed('idem-1')).toBe(1);
    // The kept response holds the new token's secret: it is sealed, not stored in the clear.
    const [kept] = await keptKeys(key);
    expect(kept?.response?.includes(Buffer.from(created.data.token))).toBe(false);
  });

  it('refuses the same key with a different request and runs nothing', async () => {
    const admin = await service.token('admin', 'idem-mismatch');
    const key = randomUUID();
    await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-2' }, key);
    const reused = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-other' }, key);
    expect(reused.body.data ?? null).toBeNull();
    expect(reused.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await tokensNamed('idem-other')).toBe(0);
    // Keys belong to a token: another caller's identical key is a different key.
    const other = await service.token('admin', 'idem-other-caller');
    const theirs = await mutate(service.app.urls.graphql, other, CREATE_TOKEN, { name: 'idem-other' }, key);
    expect(theirs.body.extensions).toBeUndefined();
    expect(await tokensNamed('idem-other')).toBe(1);
  });

  it('lets exactly one of several concurrent copies run; the others get its response', async () => {
    const admin = await service.token('admin', 'idem-race');
    const key = randomUUID();
    const copies = await Promise.all(
      Array.from({ length: 5 }, (_, index) =>
        mutate((index % 2 ? twin : service).app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-3' }, key),
      ),
    );
    expect(await tokensNamed('idem-3')).toBe(1);
    for (const copy of copies) expect(copy.body.data).toEqual(copies[0]!.body.data);
    expect(copies.filter((copy) => !copy.body.extensions)).toHaveLength(1);
  });

  it('keeps no key for a mutation that failed with a typed error, so a retry runs again', async () => {
    const operator = await service.token('operator', 'idem-typed-error');
    const key = randomUUID();
    const approve = `mutation { approveDevice(deviceId: "no-such-device") { __typename } }`;
    const first = await mutate(service.app.urls.graphql, operator, approve, {}, key);
    expect(first.body.data).toEqual({ approveDevice: { __typename: 'DeviceNotFound' } });
    expect(await keptKeys(key)).toEqual([]);
  });

  it('covers a mutation that commits in batches of its own (the inventory import)', async () => {
    const facilities = await service.token('facilities', 'idem-import');
    const key = randomUUID();
    const importList = `mutation ($input: ImportDeviceInventoryInput!) {
      importDeviceInventory(input: $input) {
        ... on MutationImportDeviceInventorySuccess { data { created unchanged } } } }`;
    const input = { devices: [{ deviceId: 'idem-import-1', deviceType: 'PLC' }] };
    const first = await mutate(service.app.urls.graphql, facilities, importList, { input }, key);
    expect(first.body.data).toEqual({ importDeviceInventory: { data: { created: 1, unchanged: 0 } } });
    const retry = await mutate(service.app.urls.graphql, facilities, importList, { input }, key);
    expect(retry.body).toEqual({ ...first.body, extensions: { idempotentReplay: true } });
  });

  it('replays over graphql-ws what the first request over HTTP returned', async () => {
    const admin = await service.token('admin', 'idem-ws');
    const key = randomUUID();
    const first = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'idem-4' }, key);
    const client = createClient({
      url: service.app.urls.graphql.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${admin}` },
      retryAttempts: 0,
    });
    try {
      const results = client.iterate<Record<string, unknown>, Record<string, unknown>>({
        query: CREATE_TOKEN,
        variables: { name: 'idem-4' },
        extensions: { idempotencyKey: key },
      });
      const next = await results.next();
      expect(next.value).toEqual({ data: first.body.data, extensions: { idempotentReplay: true } });
    } finally {
      await client.dispose();
    }
    expect(await tokensNamed('idem-4')).toBe(1);
  });

  it('refuses a malformed key before running anything', async () => {
    const admin = await service.token('admin', 'idem-bad-key');
    const bad = await mutate(
      service.app.urls.graphql,
      admin,
      CREATE_TOKEN,
      { name: 'idem-5' },
      'no spaces allowed',
    );
    expect(bad.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await tokensNamed('idem-5')).toBe(0);
  });
});

describe('per-token mutation rate limit', () => {
  const CHALLENGE = `mutation { challengeDevice(deviceId: "nowhere") {
    __typename ... on RateLimited { code retryAfterSeconds } } }`;

  it('answers RATE_LIMITED past the budget, counted across instances, for that token only', async () => {
    const operator = await service.token('operator', 'rate-limited');
    const typenames: string[] = [];
    for (let index = 0; index < LIMIT; index += 1) {
      const instance = index % 2 ? twin : service;
      const { body } = await mutate(instance.app.urls.graphql, operator, CHALLENGE, {});
      typenames.push((body.data?.challengeDevice as { __typename: string }).__typename);
    }
    // Failed mutations count too: the budget is about load, not success.
    expect(new Set(typenames)).toEqual(new Set(['DeviceNotFound']));
    const limited = await mutate(twin.app.urls.graphql, operator, CHALLENGE, {});
    expect(limited.body.data?.challengeDevice).toEqual({
      __typename: 'RateLimited',
      code: 'RATE_LIMITED',
      retryAfterSeconds: expect.any(Number) as unknown,
    });
    expect(
      (limited.body.data?.challengeDevice as { retryAfterSeconds: number }).retryAfterSeconds,
    ).toBeGreaterThan(0);

    const fresh = await service.token('operator', 'rate-fresh');
    const other = await mutate(service.app.urls.graphql, fresh, CHALLENGE, {});
    expect(other.body.data?.challengeDevice).toEqual({ __typename: 'DeviceNotFound' });
    // Queries are not limited.
    const query = await mutate(service.app.urls.graphql, operator, '{ viewer { name } }', {});
    expect(query.body.data).toEqual({ viewer: { name: 'rate-limited' } });
  });

  it('still replays an idempotent retry to a limited token (a replay runs nothing)', async () => {
    const admin = await service.token('admin', 'rate-replay');
    const key = randomUUID();
    const first = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'rate-replay-1' }, key);
    for (let index = 1; index < LIMIT; index += 1) {
      await mutate(service.app.urls.graphql, admin, CHALLENGE, {});
    }
    const limited = await mutate(service.app.urls.graphql, admin, CREATE_TOKEN, { name: 'rate-replay-2' });
    expect(limited.body.data?.createApiToken).toMatchObject({ __typename: 'RateLimited' });
    const replay = await mutate(
      service.app.urls.graphql,
      admin,
      CREATE_TOKEN,
      { name: 'rate-replay-1' },
      key,
    );
    expect(replay.body.data).toEqual(first.body.data);
  });
});
