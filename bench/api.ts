import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { loadConfig } from '../src/config.js';
import { startService, type Running } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import type { AttestationDecidedEvent } from '../src/shared/events.js';
import type { FromClient, Latencies, ToClient } from './api-client.js';
import { API_FLEET, seedApiDatabase, siteIdOf } from './api-seed.js';
import { benchEnvironment, fmt, machine } from './support.js';

v8.setFlagsFromString('--expose-gc');
/** Full collections before each memory reading, so growth is live objects and not garbage. */
const gc = vm.runInNewContext('gc') as () => void;

/**
 * The GraphQL API under dashboard, SIEM and live-feed load, on PostgreSQL seeded with the fleet of
 * api-seed.ts; the service runs in this process, every client in one forked process.
 */
export async function runApiBenchmark(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seed: { type: 'boolean', default: false },
      reseed: { type: 'boolean', default: false },
      seconds: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '32' },
      rate: { type: 'string', default: '200' },
      'siem-rows': { type: 'string', default: '10000' },
      subscribers: { type: 'string', default: '2000' },
      'events-per-second': { type: 'string', default: '200' },
      'fanout-seconds': { type: 'string', default: '20' },
      only: { type: 'string' },
    },
  });
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl)
    throw new Error('DATABASE_URL must name a PostgreSQL database (fp_bench_api is created beside it)');
  console.log(machine());
  const databaseUrl = await seedApiDatabase(adminUrl, { force: values.reseed });
  if (values.seed || values.reseed) return;

  const sites = Array.from({ length: API_FLEET.sites }, (_, index) => siteIdOf(index));
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-bench-api-'));
  let running: Running | undefined;
  let client: ClientProcess | undefined;
  try {
    running = await startService(
      loadConfig(benchEnvironment(dataDir, databaseUrl)),
      createLogger({ level: 'warn', pretty: false }),
    );
    // The seeded fleet is due for nothing, and the background passes stay out of the measurements.
    await running.scheduler.stop();
    await running.riskScheduler.stop();
    const { services } = running;
    const { token } = await services.tokens.create(services.database.orm.em.fork(), {
      name: 'api-bench',
      role: 'viewer',
      actor: 'bench',
    });
    client = new ClientProcess({ url: running.app.urls.graphql, token, sites });
    const server = new ServerMeter();

    const run: Phase = { client, server, running, sites, values };
    const only = new Set((values.only ?? 'fleet,siem,fanout').split(','));
    if (only.has('fleet')) await fleetPhase(run);
    if (only.has('siem')) await siemPhase(run);
    if (only.has('fanout')) await fanoutPhase(run);
    console.log(
      `\nload average at the end: ${os
        .loadavg()
        .map((load) => fmt(load, 2))
        .join(' ')}`,
    );
  } finally {
    await client?.close();
    await running?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

type Options = Record<string, string | boolean | undefined>;

interface Phase {
  client: ClientProcess;
  server: ServerMeter;
  running: Running;
  sites: string[];
  values: Options;
}

async function fleetPhase({ client, server, values }: Phase): Promise<void> {
  const seconds = Number(values.seconds);
  console.log(`\nfleet page: 100 riskiest devices of a site (sites in turn) with site, certificate, last
attestation, open cases and top risk factors (FleetPage document)`);
  await client.ask({ type: 'fleet-closed', seconds: 2, concurrency: 8 }, 'fleet');
  server.reset();
  const closed = await client.ask(
    { type: 'fleet-closed', seconds, concurrency: Number(values.concurrency) },
    'fleet',
  );
  console.log(
    `  concurrency ${values.concurrency}, ${seconds} s: ${fmt(closed.ok / (closed.elapsedMs / 1000))} requests/s, ${latencyLine(closed.latency)}${failures(closed)}; ${server.line()}`,
  );
  server.reset();
  const open = await client.ask({ type: 'fleet-open', seconds, rate: Number(values.rate) }, 'fleet');
  console.log(
    `  open loop ${values.rate} requests/s, ${seconds} s: ${fmt(open.ok / (open.elapsedMs / 1000))} answered/s, ${latencyLine(open.latency)} (from when each was due)${failures(open)}; ${server.line()}`,
  );
}

async function siemPhase({ client, server, sites, values }: Phase): Promise<void> {
  const siemRows = Number(values['siem-rows']);
  server.reset();
  const siem = await client.ask({ type: 'siem', rows: siemRows, pageSize: 500, site: sites[7]! }, 'siem');
  console.log(
    `\nSIEM pull: attestationResults(filter: {site: "${sites[7]}"}, first: 500, after) from the start`,
  );
  console.log(
    `  ${siem.rows} rows in ${siem.pages} pages, ${fmt(siem.elapsedMs / 1000, 2)} s: ${fmt(siem.rows / (siem.elapsedMs / 1000), 0)} rows/s, page p50 ${fmt(siem.page.p50)} ms, p99 ${fmt(siem.page.p99)} ms; ${server.line()}`,
  );
}

async function fanoutPhase({ client, server, running, sites, values }: Phase): Promise<void> {
  const subscriberCount = Number(values.subscribers);
  const eventRate = Number(values['events-per-second']);
  console.log(
    `\nfan-out: ${subscriberCount} graphql-ws subscribers (one socket each, another process), attestationEvents(filter: {site}) over ${sites.length} sites`,
  );
  const events = await sampleEvents(running);
  const publisher = new Publisher(running, events, sites);
  const before = await settledMemory();
  const subscribed = await client.ask({ type: 'subscribe', subscribers: subscriberCount }, 'subscribed');
  // Every subscription is live once each subscriber has had an event: one per site, until all have.
  const ready = performance.now();
  let reached = 0;
  while (reached < subscriberCount && performance.now() - ready < 60_000) {
    publisher.publishOneEach();
    await pause(500);
    reached = (await client.ask({ type: 'count-report' }, 'counts')).reached;
  }
  console.log(
    `  ${reached}/${subscriberCount} subscribed and live in ${fmt((subscribed.elapsedMs + performance.now() - ready) / 1000)} s (${subscribed.failed} failed)`,
  );
  const idle = await settledMemory();
  const perSubscriber = (key: 'rss' | 'heapUsed' | 'external') =>
    (idle[key] - before[key]) / subscriberCount / 1024;
  console.log(
    `  server memory per idle subscriber: ${fmt(perSubscriber('heapUsed') + perSubscriber('external'))} KB live (JS heap ${fmt(perSubscriber('heapUsed'))} KB + external ${fmt(perSubscriber('external'))} KB; heap ${mib(before.heapUsed)} -> ${mib(idle.heapUsed)} MiB)`,
  );
  // RSS also moves with pages V8 keeps or returns from earlier phases, so it is shown, not divided.
  console.log(
    `  server RSS ${mib(before.rss)} -> ${mib(idle.rss)} MiB (${fmt(perSubscriber('rss'))} KB per subscriber)`,
  );

  await client.ask({ type: 'count-reset' }, null);
  server.reset();
  const { published, elapsedMs } = await publisher.run(eventRate, Number(values['fanout-seconds']));
  const expected = published * (subscriberCount / sites.length);
  const drainUntil = performance.now() + 10_000;
  let counts = await client.ask({ type: 'count-report' }, 'counts');
  while (counts.delivered + counts.dropped < expected && performance.now() < drainUntil) {
    await pause(500);
    counts = await client.ask({ type: 'count-report' }, 'counts');
  }
  const serverLine = server.line();
  const deliveringSeconds = (counts.lastMs - counts.firstMs) / 1000;
  console.log(
    `  published ${published} events in ${fmt(elapsedMs / 1000)} s through the app event bus (attestation.decided): ${fmt(published / (elapsedMs / 1000))}/s of the ${eventRate}/s asked`,
  );
  console.log(
    `  delivered ${counts.delivered}/${expected}: ${fmt(counts.delivered / deliveringSeconds, 0)} deliveries/s (target ${fmt((eventRate * subscriberCount) / sites.length, 0)}), ${counts.missed} MissedEvents markers for ${counts.dropped} dropped, ${counts.errors} subscriber errors`,
  );
  console.log(`  delivery latency (publish to receipt): ${latencyLine(counts.latency)}`);
  console.log(`  ${serverLine}; client process ${fmt(counts.cpuSeconds / deliveringSeconds, 2)} cores`);
}

/** Memory once garbage is collected and the sockets' last writes have settled. */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  gc();
  await pause(1000);
  gc();
  return process.memoryUsage();
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes: number) => fmt(bytes / 2 ** 20);
const latencyLine = (latency: Latencies) =>
  `p50 ${fmt(latency.p50)} ms, p99 ${fmt(latency.p99)} ms, max ${fmt(latency.max)} ms`;
const failures = (result: { failed: number; skipped: number; firstError: string | null }) =>
  result.failed || result.skipped
    ? ` — ${result.failed} failed, ${result.skipped} not sent (first error: ${result.firstError})`
    : '';

/** The service's CPU and event-loop delay since the last reset. */
class ServerMeter {
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private cpu = process.cpuUsage();
  private started = performance.now();

  constructor() {
    this.loop.enable();
  }

  reset(): void {
    this.loop.reset();
    this.cpu = process.cpuUsage();
    this.started = performance.now();
  }

  line(): string {
    const cpu = process.cpuUsage(this.cpu);
    const cores = (cpu.user + cpu.system) / 1e6 / ((performance.now() - this.started) / 1000);
    return `service ${fmt(cores, 2)} cores, event-loop delay p99 ${fmt(this.loop.percentile(99) / 1e6)} ms`;
  }
}

/**
 * Real PASS results of devices with nothing against them (the common case, about half the fleet), as
 * the live feed carries them, re-stamped as decided now. The bus's other consumers see them as they
 * would live: presence notes the device, and risk has nothing to rescore (no write to the seeded fleet).
 */
async function sampleEvents(
  running: Running,
): Promise<Map<string, Omit<AttestationDecidedEvent, 'decidedAt'>[]>> {
  const rows = await running.services.database.orm.em.getConnection().execute<
    Array<{
      seq: string;
      challenge_id: string;
      device_id: string;
      site_id: string;
      outcome: AttestationDecidedEvent['outcome'];
      reasons: string[];
      nonce_match: boolean | null;
      cert_chain_valid: boolean | null;
      signature_valid: boolean | null;
      firmware_hash: string | null;
      latency_ms: number | null;
      status: string;
    }>
  >(
    `select distinct on (r.device_ref) r.seq, r.challenge_id, r.device_id, d.site_id, r.outcome, r.reasons,
       r.nonce_match, r.cert_chain_valid, r.signature_valid, r.firmware_hash, r.latency_ms, r.status
     from device d join attestation_result r on r.device_ref = d.id
     where d.device_id < ? and d.risk_score = 0 and r.outcome = 'PASS'
     order by r.device_ref, r.seq desc`,
    [`bench-${String(API_FLEET.sites * 20).padStart(6, '0')}`],
  );
  const bySite = new Map<string, Omit<AttestationDecidedEvent, 'decidedAt'>[]>();
  for (const row of rows) {
    const list = bySite.get(row.site_id) ?? [];
    list.push({
      seq: String(row.seq),
      challengeId: row.challenge_id,
      deviceId: row.device_id,
      siteId: row.site_id,
      outcome: row.outcome,
      reasons: row.reasons,
      nonceMatch: row.nonce_match,
      certChainValid: row.cert_chain_valid,
      signatureValid: row.signature_valid,
      firmwareHash: row.firmware_hash,
      timestamp: null,
      receivedAt: null,
      latencyMs: row.latency_ms,
      riskScore: 0,
      status: row.status,
    });
    bySite.set(row.site_id, list);
  }
  return bySite;
}

/** Publishes on the bus the service's own attestation path publishes on after each commit. */
class Publisher {
  private published = 0;

  constructor(
    private readonly running: Running,
    private readonly events: Map<string, Omit<AttestationDecidedEvent, 'decidedAt'>[]>,
    private readonly sites: string[],
  ) {}

  private publish(site: string): void {
    const list = this.events.get(site)!;
    const event = list[this.published++ % list.length]!;
    // decidedAt doubles as the publish timestamp the subscribers measure latency from.
    this.running.services.pubsub.publish('attestation.decided', {
      ...event,
      decidedAt: new Date().toISOString(),
    });
  }

  publishOneEach(): void {
    for (const site of this.sites) this.publish(site);
  }

  /**
   * `rate` events a second, the sites in turn, for `seconds`. Decisions reach the bus from separate
   * commits, so at most a group's worth is published in one turn of the event loop; when the service
   * cannot keep up the rate achieved is lower (and printed) and the run still ends on time.
   */
  async run(rate: number, seconds: number): Promise<{ published: number; elapsedMs: number }> {
    const GROUP = 10;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    let sent = 0;
    for (let now = started; now < deadline; now = performance.now()) {
      const due = Math.floor(((now - started) * rate) / 1000) + 1;
      const until = Math.min(due, sent + GROUP);
      for (; sent < until; sent += 1) this.publish(this.sites[sent % this.sites.length]!);
      await (sent < due ? setImmediate() : pause(5));
    }
    return { published: sent, elapsedMs: performance.now() - started };
  }
}

/** The forked client process and its request/reply messages. */
class ClientProcess {
  private readonly child: ChildProcess;
  private waiting: {
    type: FromClient['type'];
    resolve: (message: FromClient) => void;
    reject: (error: Error) => void;
  } | null = null;

  constructor(setup: { url: string; token: string; sites: string[] }) {
    this.child = fork(fileURLToPath(new URL('./api-client.ts', import.meta.url)), [JSON.stringify(setup)]);
    this.child.on('message', (message: FromClient) => {
      if (message.type === 'progress') {
        console.log(`  ${message.line}`);
        return;
      }
      const waiter = this.waiting;
      if (waiter && waiter.type === message.type) {
        this.waiting = null;
        waiter.resolve(message);
      }
    });
    this.child.on('exit', (code) => this.waiting?.reject(new Error(`client process exited (${code})`)));
  }

  /** Sends one message and waits for the reply of type `reply` (none for `null`). */
  ask<T extends FromClient['type']>(message: ToClient, reply: T): Promise<Extract<FromClient, { type: T }>>;
  ask(message: ToClient, reply: null): Promise<void>;
  ask(message: ToClient, reply: FromClient['type'] | null): Promise<unknown> {
    this.child.send(message);
    if (reply === null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting = { type: reply, resolve, reject };
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ type: 'exit' } satisfies ToClient);
    await Promise.race([exited, pause(5000)]);
    if (this.child.exitCode === null) this.child.kill();
  }
}
