import 'reflect-metadata';
import os from 'node:os';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { startService, type Running } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { decodeCsr, verifyCsr } from '../src/pki/index.js';
import type { ClientSetup, FromClient, RunResult, ToClient } from './enroll-client.js';
import {
  benchEnvironment,
  createDatabase,
  everySecond,
  fmt,
  generateCsr,
  machine,
  opsPerSecond,
  percentile,
  redact,
} from './support.js';

const WARMUP_SECONDS = 3;
const CEILING_SECONDS = 3;

/**
 * End-to-end enrollments per second: OTT request + EST simpleenroll over HTTPS with keep-alive,
 * against the whole service in this process, the client in a worker thread.
 */
export async function runEnrollBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      concurrency: { type: 'string', default: '16' },
      seconds: { type: 'string', default: '60' },
      devices: { type: 'string' },
      embedded: { type: 'boolean', default: false },
      /** Writes a .cpuprofile of the service's thread during the timed phase only. */
      profile: { type: 'string' },
    },
    strict: true,
  });
  const concurrency = positiveInt('--concurrency', values.concurrency);
  const seconds = positiveInt('--seconds', values.seconds);
  const deviceCap = values.devices === undefined ? 1_000_000 : positiveInt('--devices', values.devices);
  const adminUrl = values.embedded ? undefined : process.env.DATABASE_URL;

  console.log(machine());
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-bench-'));
  const database = adminUrl ? await createDatabase(adminUrl) : undefined;
  console.log(
    `database: ${database ? `PostgreSQL (${redact(database.url)})` : `embedded PGlite (${dataDir})`}`,
  );
  console.log(`concurrency ${concurrency}, ${seconds} s, device cap ${deviceCap}\n`);

  let running: Running | undefined;
  let client: Client | undefined;
  try {
    const config = loadConfig(
      benchEnvironment(dataDir, database?.url, {
        FLEETPROOF_OTT_RATE_PER_DEVICE: '1000000',
        FLEETPROOF_OTT_RATE_PER_ADDRESS: '1000000',
      }),
    );
    const startedAt = performance.now();
    running = await startService(config, createLogger({ level: config.logLevel, pretty: false }));
    const { services } = running;
    console.log(
      `service started in ${fmt(performance.now() - startedAt, 0)} ms at ${running.app.urls.https}`,
    );

    await caCeiling(running);

    client = new Client({ httpsUrl: running.app.urls.https, rootPem: services.ca.rootPem, concurrency });
    let registered = 0;
    const prepare = async (count: number) => {
      const ids = Array.from({ length: count }, (_, index) => `bench-${registered + index + 1}`);
      registered += count;
      // Key generation (worker) and the inventory import (service) run side by side.
      await Promise.all([client!.generate(ids), importDevices(running!, ids)]);
    };

    const warmupDevices = Math.min(deviceCap, Math.max(200, concurrency * 25));
    console.log(`\nwarm-up: ${warmupDevices} devices, ${WARMUP_SECONDS} s`);
    await prepare(warmupDevices);
    const warmup = await client.run(WARMUP_SECONDS);
    const warmupRate = warmup.ok / (warmup.elapsedMs / 1000);
    console.log(`warm-up: ${fmt(warmupRate)} enrollments/s`);

    const left = deviceCap - registered;
    const unused = registered - warmup.ok - failures(warmup);
    const wanted = Math.ceil(warmupRate * seconds * 2.5) + concurrency * 4 - unused;
    const more = Math.max(0, Math.min(left, wanted));
    if (more > 0) {
      console.log(`\npreparing ${more} more devices (warm-up rate x ${seconds} s x 2.5)`);
      await prepare(more);
    }

    console.log(`\ntimed: ${seconds} s at concurrency ${concurrency}`);
    const profiler = values.profile ? await startProfiler() : undefined;
    const queriesBefore = sqlStatements.count;
    const result = await client.run(seconds);
    const queries = sqlStatements.count - queriesBefore;
    if (profiler && values.profile) await profiler.stop(values.profile);
    report(result);
    console.log(`  SQL statements per enrollment: ${fmt(queries / Math.max(1, result.ok))}`);
  } finally {
    await client?.close();
    await running?.stop();
    await rm(dataDir, { recursive: true, force: true });
    if (database) await database.drop();
  }
}

/** Counts the statements the service sends (MikroORM -> knex -> pg.Client.query), to show round trips. */
const sqlStatements = { count: 0 };
const originalQuery = Reflect.get(pg.Client.prototype, 'query') as (...args: unknown[]) => unknown;
Reflect.set(pg.Client.prototype, 'query', function (this: pg.Client, ...args: unknown[]) {
  sqlStatements.count += 1;
  return originalQuery.apply(this, args);
});

/** The CA alone, single-threaded, on one pre-decoded CSR: the upper bound of any enrollment rate. */
async function caCeiling({ services }: Running): Promise<void> {
  const body = Buffer.from(await generateCsr('ceiling-1'));
  const csr = decodeCsr(body);
  verifyCsr(csr);
  const cdiCommitment = `sha256:${'ab'.repeat(32)}`;
  const issue = await opsPerSecond(CEILING_SECONDS, () =>
    services.ca.issueDeviceCertificate({ csr, deviceId: 'ceiling-1', cdiCommitment, validityDays: 30 }),
  );
  const decode = await opsPerSecond(CEILING_SECONDS, () => verifyCsr(decodeCsr(body)));
  console.log(`CA ceiling (single thread, ${CEILING_SECONDS} s each):`);
  console.log(`  issueDeviceCertificate (pre-decoded CSR): ${fmt(issue)} /s`);
  console.log(`  decodeCsr + verifyCsr:                    ${fmt(decode)} /s`);
}

/** Registers `ids` through the inventory import (one transaction per 500 rows, a savepoint per row). */
async function importDevices({ services }: Running, ids: string[]): Promise<void> {
  const rows = ids.map((id) => ({ device_id: id, device_type: 'PLC' }));
  const started = performance.now();
  let done = 0;
  const stopTicker = everySecond(() => console.log(`  import: ${done}/${rows.length} devices`));
  try {
    const results = await services.inventory.import(
      services.database.orm.em.fork(),
      rows,
      'bench',
      (count) => (done = count),
    );
    const failed = results.filter((row) => row.outcome === 'error');
    if (failed.length > 0) throw new Error(`inventory import failed: ${JSON.stringify(failed.slice(0, 3))}`);
  } finally {
    stopTicker();
  }
  const secondsTaken = (performance.now() - started) / 1000;
  console.log(
    `  import: ${ids.length} devices in ${fmt(secondsTaken)} s (${fmt(ids.length / secondsTaken, 0)}/s)`,
  );
}

function report(result: RunResult): void {
  const rate = result.ok / (result.elapsedMs / 1000);
  const ms = (values: Float64Array, p: number) => `${fmt(percentile(values, p))} ms`;
  console.log('\nresult:');
  console.log(
    `  enrollments/s sustained: ${fmt(rate)} (${result.ok} in ${fmt(result.elapsedMs / 1000)} s)` +
      (result.exhausted ? ' - ran out of devices before the end; raise --devices' : ''),
  );
  console.log(`  pair latency: p50 ${ms(result.pair, 50)}, p99 ${ms(result.pair, 99)}`);
  console.log(`    ott request:   p50 ${ms(result.ott, 50)}, p99 ${ms(result.ott, 99)}`);
  console.log(`    simpleenroll:  p50 ${ms(result.est, 50)}, p99 ${ms(result.est, 99)}`);
  const errors = Object.entries(result.errors);
  if (errors.length === 0) console.log('  errors: none');
  for (const [key, { count, sample }] of errors) console.log(`  errors ${key}: ${count} (e.g. ${sample})`);
}

const failures = (result: RunResult) => Object.values(result.errors).reduce((sum, e) => sum + e.count, 0);

/** The load generator worker and its message protocol. */
class Client {
  private readonly worker: Worker;

  constructor(setup: ClientSetup) {
    // tsx's loader is not inherited by workers: a plain-JS bootstrap registers it, then loads the client.
    const entry = new URL('./enroll-client.ts', import.meta.url).href;
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`;
    this.worker = new Worker(bootstrap, { eval: true, workerData: setup });
  }

  generate(deviceIds: string[]): Promise<void> {
    const started = performance.now();
    return this.exchange({ type: 'generate', deviceIds }, (message, done) => {
      if (message.type !== 'generated') return;
      if (!message.final) return console.log(`  keys + CSRs: ${message.done}/${message.total}`);
      const secondsTaken = (performance.now() - started) / 1000;
      console.log(
        `  keys + CSRs: ${message.total} in ${fmt(secondsTaken)} s (${fmt(message.total / secondsTaken, 0)}/s)`,
      );
      done(undefined);
    });
  }

  run(seconds: number): Promise<RunResult> {
    let previous = 0;
    return this.exchange<RunResult>({ type: 'run', seconds }, (message, done) => {
      if (message.type === 'progress') {
        console.log(
          `  ${fmt(message.elapsedMs / 1000, 0).padStart(3)} s: ${message.ok} enrolled` +
            ` (${message.ok - previous}/s), ${message.failed} failed`,
        );
        previous = message.ok;
      } else if (message.type === 'result') done(message.result);
    });
  }

  async close(): Promise<void> {
    this.worker.postMessage({ type: 'exit' } satisfies ToClient);
    await this.worker.terminate();
  }

  private exchange<T>(
    request: ToClient,
    onMessage: (message: FromClient, done: (value: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const listener = (message: FromClient) =>
        onMessage(message, (value) => {
          this.worker.off('message', listener);
          this.worker.off('error', reject);
          resolve(value);
        });
      this.worker.on('message', listener);
      this.worker.once('error', reject);
      this.worker.postMessage(request);
    });
  }
}

async function startProfiler(): Promise<{ stop(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await session.post('Profiler.stop');
      await writeFile(file, JSON.stringify(profile));
      session.disconnect();
      console.log(`  cpu profile of the service thread: ${file}`);
    },
  };
}

function positiveInt(flag: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`${flag} must be a positive integer`);
  return parsed;
}
