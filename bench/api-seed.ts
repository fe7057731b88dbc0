import pg from 'pg';
import { createLogger } from '../src/observability/logger.js';
import { migrate, openDatabase } from '../src/db/database.js';
import { fmt, redact } from './support.js';

/** The fleet the api benchmark runs on. Changing a figure here changes the mark and reseeds. */
export const API_FLEET = {
  database: 'fp_bench_api',
  sites: 20,
  devices: 100_000,
  /** Decided challenges per device, one an hour: devices × rounds attestation results. */
  rounds: 20,
} as const;

/** Written last, as the database's comment: a database carrying it is complete (an interrupted seed is not). */
const SEED_MARK = `fleetproof api bench v1: ${API_FLEET.sites} sites, ${API_FLEET.devices} devices, ${API_FLEET.devices * API_FLEET.rounds} results`;

export const siteIdOf = (index: number): string => `site-${String(index).padStart(2, '0')}`;

/** `fp_bench_api` beside the database `adminUrl` names. */
export function apiBenchUrl(adminUrl: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${API_FLEET.database}`;
  return url.toString();
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates, migrates and fills `fp_bench_api` set-based (generate_series, deterministic ids and
 * hash-derived variety, so two seeds give the same fleet), printing each step. Skips everything
 * when the database already carries the mark of this size; otherwise drops and rebuilds it.
 */
export async function seedApiDatabase(adminUrl: string, options: { force?: boolean } = {}): Promise<string> {
  const url = apiBenchUrl(adminUrl);
  const maintenance = new URL(adminUrl);
  maintenance.pathname = '/postgres';
  const mark = await withClient(maintenance.toString(), async (client) => {
    const { rows } = await client.query<{ mark: string | null }>(
      `select shobj_description(oid, 'pg_database') as mark from pg_database where datname = $1`,
      [API_FLEET.database],
    );
    return rows[0]?.mark ?? null;
  });
  if (mark === SEED_MARK && !options.force) {
    console.log(`seed: ${redact(url)} already holds ${SEED_MARK}`);
    return url;
  }

  const started = performance.now();
  const step = async (label: string, work: () => Promise<unknown>) => {
    const t0 = performance.now();
    await work();
    console.log(
      `  ${label} (${fmt((performance.now() - t0) / 1000)} s, ${fmt((performance.now() - started) / 1000)} s total)`,
    );
  };
  console.log(`seed: building ${SEED_MARK} in ${redact(url)}`);
  await withClient(maintenance.toString(), async (client) => {
    await step('database created', async () => {
      await client.query(`drop database if exists ${API_FLEET.database} with (force)`);
      await client.query(`create database ${API_FLEET.database}`);
    });
  });
  await step('migrated', async () => {
    const database = await openDatabase({
      databaseUrl: url,
      dataDir: '.',
      logger: createLogger({ level: 'warn', pretty: false }),
    });
    try {
      await migrate(database.orm);
    } finally {
      await database.close();
    }
  });

  await withClient(url, async (client) => {
    // The rows are generated consistent with each other: foreign-key triggers would only re-check that.
    await client.query(`set session_replication_role = replica`);
    await client.query(`set synchronous_commit = off`);
    await client.query(`set maintenance_work_mem = '256MB'`);
    const n = API_FLEET.devices;
    const rounds = API_FLEET.rounds;
    // A device's outcome in round k: 2 % FAIL, 1 % TIMEOUT, else PASS (the same expression everywhere).
    const outcome = (i: string, k: string) =>
      `case when abs(hashint4(${i} * 31 + ${k})) % 1000 < 20 then 'FAIL'
            when abs(hashint4(${i} * 31 + ${k})) % 1000 < 30 then 'TIMEOUT' else 'PASS' end`;
    // Risk: 2 % CRITICAL, 13 % ELEVATED, 35 % NORMAL with a small score, half at 0.
    const bucket = (i: string) => `abs(hashint4(${i} + 7)) % 1000`;
    const riskScore = (i: string) =>
      `case when ${bucket(i)} < 20 then 71 + ${i} % 30 when ${bucket(i)} < 150 then 31 + ${i} % 40
            when ${bucket(i)} < 500 then 1 + ${i} % 30 else 0 end`;
    const deviceUuid = (i: string) => `md5('device-' || ${i})::uuid`;
    const sites = API_FLEET.sites;
    const lastRound = rounds - 1;
    // Round k of every device happens at base + k hours + (i mod 3600) seconds.
    const base = `(date_trunc('hour', now()) - interval '${rounds} hours')`;
    const at = (i: string, k: string) =>
      `${base} + ${k} * interval '1 hour' + (${i} % 3600) * interval '1 second'`;

    await step(`${sites} sites`, () =>
      client.query(
        `insert into site (id, name, controller_id, last_heartbeat_at, last_heartbeat_channel, created_at, updated_at)
         select 'site-' || lpad(s::text, 2, '0'), 'Bench plant ' || s, null, now(), 'rest', now() - interval '90 days', now()
           from generate_series(0, $1 - 1) s`,
        [sites],
      ),
    );
    await step(`${n} devices`, () =>
      client.query(
        `insert into device (id, device_id, type, model, site_id, criticality, cdi_commitment, firmware_version,
           firmware_hash, golden_firmware_hash, attestation_status, enrollment_state, next_challenge_at,
           registered_at, updated_at, version, consecutive_failures, last_counter, last_attestation_at,
           failure_kind, risk_score, risk_band, risk_scored_at, isolated, last_seen_at)
         select ${deviceUuid('i')}, 'bench-' || lpad(i::text, 6, '0'),
           (array['PLC','RTU','HMI','IP_CAM','GATEWAY','SENSOR'])[1 + i % 6], 'X' || (100 + i % 7),
           'site-' || lpad((i % $2)::text, 2, '0'), case when i % 5 = 0 then 'critical' else 'standard' end,
           'sha256:' || encode(sha256(('cdi-' || i)::bytea), 'hex'), '1.4.2',
           'sha256:' || repeat('ab', 32), 'sha256:' || repeat('ab', 32),
           case ${outcome('i', String(lastRound))} when 'FAIL' then 'FAILED' else 'VERIFIED' end, 'APPROVED',
           -- Nothing falls due while the benchmark runs: it measures the API, not the scheduler.
           now() + interval '365 days',
           now() - interval '60 days', now() - interval '1 day', 1, 0, ${rounds},
           ${at('i', String(lastRound))},
           case ${outcome('i', String(lastRound))} when 'FAIL' then 'CHECK_FAILED' end,
           ${riskScore('i')},
           case when ${riskScore('i')} > 70 then 'CRITICAL' when ${riskScore('i')} > 30 then 'ELEVATED' else 'NORMAL' end,
           now(), false, now() - (i % 900) * interval '1 second'
         from generate_series(0, $1 - 1) i`,
        [n, sites],
      ),
    );
    await step(`${n} current certificates`, () =>
      client.query(
        `insert into device_certificate (id, device_ref, serial_hex, fingerprint_sha256, spki_sha256, pem,
           not_before, not_after, status, issued_at)
         select md5('certificate-' || i)::uuid, ${deviceUuid('i')}, lpad(to_hex(i + 1), 40, '0'),
           encode(sha256(('fingerprint-' || i)::bytea), 'hex'), encode(sha256(('spki-' || i)::bytea), 'hex'),
           E'-----BEGIN CERTIFICATE-----\\nbench\\n-----END CERTIFICATE-----\\n',
           now() - interval '60 days', now() + interval '305 days', 'ACTIVE', now() - interval '60 days'
         from generate_series(0, $1 - 1) i`,
        [n],
      ),
    );

    const total = n * rounds;
    for (let k = 0; k < rounds; k += 1) {
      await step(`challenges and results ${(k + 1) * n}/${total}`, async () => {
        await client.query(
          `insert into attestation_challenge (id, device_ref, device_id, nonce, issued_at, deadline_at, state,
             response_hash, decided_at)
           select md5('challenge-' || i || '-' || $2::int)::uuid, ${deviceUuid('i')}, 'bench-' || lpad(i::text, 6, '0'),
             md5('nonce-' || i || '-' || $2::int) || md5('nonce2-' || i || '-' || $2::int),
             ${at('i', '$2::int')}, ${at('i', '$2::int')} + interval '30 seconds',
             case when ${outcome('i', '$2::int')} = 'TIMEOUT' then 'TIMED_OUT' else 'ANSWERED' end,
             null, ${at('i', '$2::int')} + interval '1 second'
           from generate_series(0, $1 - 1) i`,
          [n, k],
        );
        // In decision order, so seq follows decided_at as it does live.
        await client.query(
          `insert into attestation_result (challenge_id, device_ref, device_id, site_id, outcome, reasons,
             nonce_match, cert_chain_valid, signature_valid, firmware_hash, timestamp, received_at, latency_ms,
             risk_score, status, decided_at)
           select md5('challenge-' || i || '-' || $2::int)::uuid, ${deviceUuid('i')}, 'bench-' || lpad(i::text, 6, '0'),
             'site-' || lpad((i % $3)::text, 2, '0'), o.outcome,
             case o.outcome when 'FAIL' then '["FIRMWARE_MISMATCH"]'::jsonb else '[]'::jsonb end,
             case when o.outcome <> 'TIMEOUT' then true end, case when o.outcome <> 'TIMEOUT' then true end,
             case when o.outcome <> 'TIMEOUT' then true end,
             case o.outcome when 'PASS' then 'sha256:' || repeat('ab', 32)
                            when 'FAIL' then 'sha256:' || repeat('cd', 32) end,
             case when o.outcome <> 'TIMEOUT' then ${at('i', '$2::int')} + interval '200 milliseconds' end,
             case when o.outcome <> 'TIMEOUT' then ${at('i', '$2::int')} + interval '250 milliseconds' end,
             case when o.outcome <> 'TIMEOUT' then 20 + i % 200 end, null,
             case o.outcome when 'FAIL' then 'FAILED' else 'VERIFIED' end,
             ${at('i', '$2::int')} + interval '1 second'
           from generate_series(0, $1 - 1) i, lateral (select ${outcome('i', '$2::int')} as outcome) o
           order by i % 3600, i`,
          [n, k, sites],
        );
      });
    }

    await step('risk factors (1-3 per device with a score)', () =>
      client.query(
        `insert into risk_factor (device_ref, device_id, kind, severity, source, detail, weight, contribution,
           observed_at, recorded_at, decays, cleared_at, dedup_key, bundle_version)
         select ${deviceUuid('d.i')}, 'bench-' || lpad(d.i::text, 6, '0'),
           (array['IOC_HIT','FIRMWARE_DRIFT','TELEMETRY_ANOMALY'])[1 + (d.i + f) % 3],
           case when d.score > 70 then 'CRITICAL' when d.score > 30 then 'HIGH' else 'LOW' end,
           'bench', 'seeded factor ' || f, 1, d.score::float8 / d.factors,
           now() - (f + 1) * interval '1 hour', now() - (f + 1) * interval '1 hour', false, null, null, null
         from (select i, ${riskScore('i')} as score, 1 + i % 3 as factors from generate_series(0, $1 - 1) i) d,
           generate_series(0, 2) f
         where d.score > 0 and f < d.factors`,
        [n],
      ),
    );
    // One open case per FAILED device and per CRITICAL device, each with its link and OPENED entry.
    await step('open cases with links and timelines', async () => {
      await client.query(
        `insert into case_record (id, title, severity, status, source, device_ref, evidence, opened_at, updated_at)
         select md5('case-' || d.source || '-' || d.i)::uuid, d.title, d.severity,
           case when d.i % 3 = 0 then 'INVESTIGATING' else 'OPEN' end, d.source, ${deviceUuid('d.i')},
           '{}'::jsonb, now() - interval '2 hours', now() - interval '1 hour'
         from (
           select i, 'ATTESTATION_FAILURE' as source, 'HIGH' as severity, 'Attestation failed: bench-' || lpad(i::text, 6, '0') as title
             from generate_series(0, $1 - 1) i where ${outcome('i', String(lastRound))} = 'FAIL'
           union all
           select i, 'RISK_CRITICAL', 'CRITICAL', 'Critical risk: bench-' || lpad(i::text, 6, '0')
             from generate_series(0, $1 - 1) i where ${riskScore('i')} > 70
         ) d
         order by d.i`,
        [n],
      );
      await client.query(
        `insert into case_device (case_ref, device_ref, linked_at, linked_by)
         select id, device_ref, opened_at, 'system' from case_record`,
      );
      await client.query(
        `insert into case_event (case_ref, kind, actor, at, body, payload)
         select id, 'OPENED', 'system', opened_at, null, jsonb_build_object('source', source) from case_record`,
      );
    });
    await client.query(`set session_replication_role = origin`);
    await step('vacuum analyze', () => client.query('vacuum analyze'));
    await client.query(`comment on database ${API_FLEET.database} is '${SEED_MARK}'`);
  });
  console.log(`seed: done in ${fmt((performance.now() - started) / 1000)} s`);
  return url;
}
