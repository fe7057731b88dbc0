import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65_535);
const booleanFlag = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

/** A URL with one of `protocols` (and a host name); `message` says what is expected. */
const urlOf = (protocols: readonly string[], message: string) =>
  z.string().refine(
    (value) => {
      try {
        const url = new URL(value);
        return protocols.includes(url.protocol) && url.hostname !== '';
      } catch {
        return false;
      }
    },
    { message },
  );

const postgresUrl = urlOf(['postgres:', 'postgresql:'], 'must be a postgres://user@host:port/database URL');
const mqttUrl = urlOf(['mqtt:', 'mqtts:'], 'must be an mqtt:// or mqtts:// URL');
const redisUrl = urlOf(['redis:', 'rediss:'], 'must be a redis:// or rediss:// URL');

const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  DATABASE_URL: postgresUrl.optional(),
  MQTT_URL: mqttUrl.optional(),
  /** Extra trust anchors (PEM file) for an external broker's server certificate. */
  MQTT_CA_FILE: z.string().optional(),
  /** Redis that carries the app's events between service instances; unset: one instance. */
  REDIS_URL: redisUrl.optional(),
  FLEETPROOF_DATA_DIR: z.string().min(1).default('./data'),
  FLEETPROOF_CA_PASSPHRASE: z.string().min(16, 'must be at least 16 characters').optional(),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  HTTP_PORT: port.default(8080),
  HTTPS_PORT: port.default(8443),
  MQTT_PORT: port.default(8883),
  /** Host names and addresses the service's TLS certificate is valid for, comma separated. */
  FLEETPROOF_PUBLIC_HOSTS: z.string().default('localhost,127.0.0.1,::1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** GraphiQL and introspection; default on outside production. */
  FLEETPROOF_GRAPHIQL: booleanFlag.optional(),
  FLEETPROOF_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /** Validity of device certificates: short-lived operational identities. */
  FLEETPROOF_CERT_VALIDITY_DAYS: z.coerce.number().int().min(1).max(825).default(30),
  /** RFC 7030 3.5: refuse every CSR that does not carry the TLS channel binding. */
  FLEETPROOF_EST_REQUIRE_CHANNEL_BINDING: booleanFlag.default(false),
  FLEETPROOF_OTT_RATE_PER_DEVICE: z.coerce.number().int().positive().default(5),
  FLEETPROOF_OTT_RATE_PER_ADDRESS: z.coerce.number().int().positive().default(60),
  /** Mutations a token may make per window (every instance counts against the same budget). */
  FLEETPROOF_MUTATION_RATE_PER_TOKEN: z.coerce.number().int().positive().default(300),
  FLEETPROOF_MUTATION_RATE_WINDOW_S: z.coerce.number().int().positive().max(86_400).default(60),
  /** Refuse every GraphQL document that is not on the persisted-operations allow-list. */
  FLEETPROOF_GRAPHQL_PERSISTED_ONLY: booleanFlag.default(false),
  /** A persisted-operations manifest ({"sha256:<hex>": document}) instead of the bundled one. */
  FLEETPROOF_GRAPHQL_ALLOW_LIST: z.string().min(1).optional(),
  /** Items held for a subscriber that is not reading before its events are dropped (and it is told). */
  FLEETPROOF_SUBSCRIPTION_BUFFER: z.coerce.number().int().min(2).max(100_000).default(256),
  /** How long a mutation's idempotency key (and its kept response) lives. */
  FLEETPROOF_IDEMPOTENCY_KEY_TTL_S: z.coerce.number().int().min(60).max(604_800).default(86_400),
  /** How often the attestation scheduler claims due devices and times out overdue challenges. */
  FLEETPROOF_SCHEDULER_TICK_MS: z.coerce.number().int().min(50).max(60_000).default(1_000),
  /** How often the risk pass rescores devices (new policy bundles, decay). */
  FLEETPROOF_RISK_TICK_MS: z.coerce.number().int().min(50).max(600_000).default(5_000),
  /** A repeated report (same indicator or anomaly, same device) within this window is a no-op. */
  FLEETPROOF_RISK_DUPLICATE_WINDOW_S: z.coerce.number().int().min(1).max(604_800).default(3_600),
  /** A site controller silent for longer than this is STALE (heartbeats are expected every ~30 s). */
  FLEETPROOF_SITE_STALE_AFTER_S: z.coerce.number().int().min(1).max(86_400).default(90),
  /** ... and DOWN past this; must be longer than the stale threshold. */
  FLEETPROOF_SITE_DOWN_AFTER_S: z.coerce.number().int().min(2).max(604_800).default(300),
  /**
   * A device is online if any MQTT message of its own arrived within this window. Longer than the
   * standard challenge interval (1800 s), so a device that only answers challenges stays online.
   */
  FLEETPROOF_DEVICE_ONLINE_WINDOW_S: z.coerce.number().int().min(1).max(604_800).default(3_600),
  /** How often the last-seen times of devices heard from are written, in one statement. */
  FLEETPROOF_PRESENCE_FLUSH_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
});

export type RawConfig = z.infer<typeof configSchema>;

export interface Config {
  readonly production: boolean;
  readonly databaseUrl: string | undefined;
  readonly mqttUrl: string | undefined;
  readonly mqttCaFile: string | undefined;
  readonly redisUrl: string | undefined;
  readonly dataDir: string;
  readonly caPassphrase: string | undefined;
  readonly httpHost: string;
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly mqttPort: number;
  readonly publicHosts: readonly string[];
  readonly logLevel: RawConfig['LOG_LEVEL'];
  readonly graphiql: boolean;
  readonly shutdownTimeoutMs: number;
  readonly schedulerTickMs: number;
  readonly risk: { readonly tickMs: number; readonly duplicateWindowMs: number };
  readonly liveness: {
    readonly siteStaleAfterMs: number;
    readonly siteDownAfterMs: number;
    readonly deviceOnlineWindowMs: number;
    readonly presenceFlushMs: number;
  };
  readonly graphql: {
    readonly mutationRateLimit: { readonly limit: number; readonly windowSeconds: number };
    readonly idempotencyKeyTtlSeconds: number;
    readonly subscriptionBuffer: number;
    readonly persistedOperations: { readonly only: boolean; readonly manifestPath: string | null };
  };
  readonly enrollment: {
    readonly certificateValidityDays: number;
    readonly requireChannelBinding: boolean;
    readonly ottRatePerDevice: number;
    readonly ottRatePerAddress: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly issues: readonly string[]) {
    super(`Invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the environment once. `FLEETPROOF_CONFIG` may name a JSON file of the same variable names;
 * the environment wins over the file so a deployment can override one value without editing it.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const fromFile = env.FLEETPROOF_CONFIG ? readConfigFile(env.FLEETPROOF_CONFIG) : {};
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') merged[key] = value;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`),
    );
  }
  const raw = parsed.data;
  if (raw.FLEETPROOF_SITE_DOWN_AFTER_S <= raw.FLEETPROOF_SITE_STALE_AFTER_S) {
    throw new ConfigError([
      'FLEETPROOF_SITE_DOWN_AFTER_S: must be longer than FLEETPROOF_SITE_STALE_AFTER_S',
    ]);
  }
  const production = raw.NODE_ENV === 'production';
  return {
    production,
    databaseUrl: raw.DATABASE_URL,
    mqttUrl: raw.MQTT_URL,
    mqttCaFile: raw.MQTT_CA_FILE,
    redisUrl: raw.REDIS_URL,
    dataDir: path.resolve(raw.FLEETPROOF_DATA_DIR),
    caPassphrase: raw.FLEETPROOF_CA_PASSPHRASE,
    httpHost: raw.HTTP_HOST,
    httpPort: raw.HTTP_PORT,
    httpsPort: raw.HTTPS_PORT,
    mqttPort: raw.MQTT_PORT,
    publicHosts: raw.FLEETPROOF_PUBLIC_HOSTS.split(',')
      .map((host) => host.trim())
      .filter(Boolean),
    logLevel: raw.LOG_LEVEL,
    graphiql: raw.FLEETPROOF_GRAPHIQL ?? !production,
    shutdownTimeoutMs: raw.FLEETPROOF_SHUTDOWN_TIMEOUT_MS,
    schedulerTickMs: raw.FLEETPROOF_SCHEDULER_TICK_MS,
    risk: {
      tickMs: raw.FLEETPROOF_RISK_TICK_MS,
      duplicateWindowMs: raw.FLEETPROOF_RISK_DUPLICATE_WINDOW_S * 1000,
    },
    liveness: {
      siteStaleAfterMs: raw.FLEETPROOF_SITE_STALE_AFTER_S * 1000,
      siteDownAfterMs: raw.FLEETPROOF_SITE_DOWN_AFTER_S * 1000,
      deviceOnlineWindowMs: raw.FLEETPROOF_DEVICE_ONLINE_WINDOW_S * 1000,
      presenceFlushMs: raw.FLEETPROOF_PRESENCE_FLUSH_MS,
    },
    graphql: {
      mutationRateLimit: {
        limit: raw.FLEETPROOF_MUTATION_RATE_PER_TOKEN,
        windowSeconds: raw.FLEETPROOF_MUTATION_RATE_WINDOW_S,
      },
      idempotencyKeyTtlSeconds: raw.FLEETPROOF_IDEMPOTENCY_KEY_TTL_S,
      subscriptionBuffer: raw.FLEETPROOF_SUBSCRIPTION_BUFFER,
      persistedOperations: {
        only: raw.FLEETPROOF_GRAPHQL_PERSISTED_ONLY,
        manifestPath: raw.FLEETPROOF_GRAPHQL_ALLOW_LIST ?? null,
      },
    },
    enrollment: {
      certificateValidityDays: raw.FLEETPROOF_CERT_VALIDITY_DAYS,
      requireChannelBinding: raw.FLEETPROOF_EST_REQUIRE_CHANNEL_BINDING,
      ottRatePerDevice: raw.FLEETPROOF_OTT_RATE_PER_DEVICE,
      ottRatePerAddress: raw.FLEETPROOF_OTT_RATE_PER_ADDRESS,
    },
  };
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`FLEETPROOF_CONFIG: cannot read ${file}: ${(error as Error).message}`]);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, String(item)]));
  } catch (error) {
    throw new ConfigError([`FLEETPROOF_CONFIG: ${file} is not a JSON object: ${(error as Error).message}`]);
  }
}
