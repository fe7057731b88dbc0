import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { startService, type Running } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import type { Clock } from '../../src/shared/clock.js';
import { freshDatabaseUrl } from './database.js';
import { expect } from 'vitest';

export interface TestService extends Running {
  config: Config;
  dataDir: string;
  /** Creates a token of `role` and returns its secret. */
  token(role: 'viewer' | 'operator' | 'facilities' | 'integration' | 'admin', name?: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * The whole service in this process on ephemeral ports, on a fresh database. `mqtt: 'embedded'`
 * forces the in-process broker even where CI sets MQTT_URL to a real Mosquitto.
 */
export async function startTestService(
  options: {
    mqtt?: 'embedded' | 'env';
    env?: Record<string, string>;
    clock?: Clock;
    databaseUrl?: string;
    /** Reuse a data dir (and so the CA) of an earlier instance; the caller then owns its removal. */
    dataDir?: string;
  } = {},
): Promise<TestService> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'fleetproof-test-')));
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    DATABASE_URL: options.databaseUrl ?? (await freshDatabaseUrl()),
    FLEETPROOF_DATA_DIR: dataDir,
    FLEETPROOF_CA_PASSPHRASE: 'test-passphrase-not-secret',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    HTTPS_PORT: '0',
    MQTT_PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...options.env,
  };
  if (!options.env?.MQTT_URL && options.mqtt !== 'embedded' && process.env.MQTT_URL)
    env.MQTT_URL = process.env.MQTT_URL;
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel, pretty: false });
  const running = await startService(config, logger, options.clock);
  return {
    ...running,
    config,
    dataDir,
    async token(role, name = `test-${role}`) {
      const { token } = await running.services.tokens.create(running.services.database.orm.em.fork(), {
        name,
        role,
        actor: 'test',
      });
      return token;
    },
    async close() {
      await running.stop();
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A GraphQL response as it came over HTTP. */
export interface GraphQLResponse<T> {
  status: number;
  body: { data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
}

/** POSTs a GraphQL operation over real HTTP and returns status and parsed body. */
export function graphql<T = Record<string, unknown>>(
  url: string,
  token: string | undefined,
  query: string,
  variables?: Record<string, unknown>,
): Promise<GraphQLResponse<T>> {
  return postGraphQL<T>(url, token, { query, variables });
}

/** POSTs any GraphQL-over-HTTP request body (operationName, documentId, extensions, ...). */
export async function postGraphQL<T = Record<string, unknown>>(
  url: string,
  token: string | undefined,
  body: Record<string, unknown>,
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as never };
}

/** The data of an operation that must succeed: HTTP 200 and no GraphQL errors (shown if any). */
export async function graphqlData<T>(
  url: string,
  token: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<T> {
  const { status, body } = await graphql<T>(url, token, query, variables);
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  expect(status).toBe(200);
  return body.data!;
}
