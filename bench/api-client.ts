/**
 * The clients of the api benchmark, in a process of their own (child_process.fork), so that their
 * HTTP, WebSocket and JSON work never runs on the service's event loop and the service's memory is
 * measured without them. Every request goes through the typed SDK with generated documents.
 */
import {
  AttestationFeedDocument,
  AttestationResultsDocument,
  FleetPageDocument,
  createFleetClient,
  type AttestationResultsQuery,
  type FleetClient,
} from '../src/client/index.js';
import { percentile } from './support.js';

export interface Latencies {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export type ToClient =
  | { type: 'fleet-closed'; seconds: number; concurrency: number }
  | { type: 'fleet-open'; seconds: number; rate: number }
  | { type: 'siem'; rows: number; pageSize: number; site: string }
  | { type: 'subscribe'; subscribers: number }
  | { type: 'count-reset' }
  | { type: 'count-report' }
  | { type: 'exit' };

export type FromClient =
  | { type: 'progress'; line: string }
  | {
      type: 'fleet';
      ok: number;
      failed: number;
      elapsedMs: number;
      latency: Latencies;
      /** Open loop only: requests not sent because too many were already waiting. */
      skipped: number;
      firstError: string | null;
    }
  | { type: 'siem'; rows: number; pages: number; elapsedMs: number; page: Latencies }
  | { type: 'subscribed'; subscribers: number; elapsedMs: number; failed: number }
  | {
      type: 'counts';
      delivered: number;
      missed: number;
      dropped: number;
      firstMs: number;
      lastMs: number;
      latency: Latencies;
      /** Subscribers that have received at least one event since the last reset. */
      reached: number;
      errors: number;
      /** CPU seconds this client process used since the last reset. */
      cpuSeconds: number;
    };

interface Setup {
  url: string;
  token: string;
  sites: string[];
}

const setup = JSON.parse(process.argv[2] ?? '{}') as Setup;
const send = (message: FromClient) => process.send!(message);

function summarise(samples: number[]): Latencies {
  const sorted = Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

const http = createFleetClient({ url: setup.url, token: setup.token, retries: 0 });
let pageCounter = 0;

/** One fleet page: the 100 riskiest devices of a site, the sites taken in turn. */
async function fleetPage(): Promise<void> {
  const site = setup.sites[pageCounter++ % setup.sites.length]!;
  const page = await http.query(FleetPageDocument, {
    first: 100,
    filter: { site },
    orderBy: { field: 'RISK_SCORE', direction: 'DESC' },
  });
  if (page.devices.edges.length !== 100) throw new Error(`page of ${page.devices.edges.length} devices`);
}

async function fleetClosed(seconds: number, concurrency: number): Promise<void> {
  const latencies: number[] = [];
  let failed = 0;
  let firstError: string | null = null;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await fleetPage();
        latencies.push(performance.now() - t0);
      } catch (error) {
        failed += 1;
        firstError ??= String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  reportFleet(started, latencies, { failed, skipped: 0, firstError });
}

/** One fleet run's figures, for the parent process. */
function reportFleet(
  started: number,
  latencies: number[],
  outcome: { failed: number; skipped: number; firstError: string | null },
): void {
  send({
    type: 'fleet',
    ok: latencies.length,
    elapsedMs: performance.now() - started,
    latency: summarise(latencies),
    ...outcome,
  });
}

/**
 * A fixed arrival rate whatever the answers do. Latency counts from when a request was due, not when
 * it left, so a stalled service shows as latency instead of as fewer requests (coordinated omission).
 */
async function fleetOpen(seconds: number, rate: number): Promise<void> {
  const MAX_IN_FLIGHT = 512;
  const latencies: number[] = [];
  let failed = 0;
  let skipped = 0;
  let firstError: string | null = null;
  let inFlight = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  const total = Math.round(seconds * rate);
  for (let index = 0; index < total; index += 1) {
    const due = started + (index * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (inFlight >= MAX_IN_FLIGHT) {
      skipped += 1;
      continue;
    }
    inFlight += 1;
    pending.push(
      fleetPage()
        .then(() => void latencies.push(performance.now() - due))
        .catch((error: unknown) => {
          failed += 1;
          firstError ??= String(error);
        })
        .finally(() => (inFlight -= 1)),
    );
  }
  await Promise.all(pending);
  reportFleet(started, latencies, { failed, skipped, firstError });
}

/** A SIEM connector reading a site's results from the start, page after page, as fast as they come. */
async function siem(rows: number, pageSize: number, site: string): Promise<void> {
  const pages: number[] = [];
  let read = 0;
  let after: string | null = null;
  const started = performance.now();
  while (read < rows) {
    const t0 = performance.now();
    const { attestationResults }: AttestationResultsQuery = await http.query(AttestationResultsDocument, {
      first: Math.min(pageSize, rows - read),
      after,
      filter: { site },
    });
    pages.push(performance.now() - t0);
    read += attestationResults.edges.length;
    after = attestationResults.pageInfo.endCursor ?? null;
    if (!attestationResults.pageInfo.hasNextPage) break;
  }
  send({
    type: 'siem',
    rows: read,
    pages: pages.length,
    elapsedMs: performance.now() - started,
    page: summarise(pages),
  });
}

// Fan-out: one client (one socket) per subscriber, as each would be a dashboard of its own.
const subscribers: FleetClient[] = [];
const received = new Set<number>();
let counts = { delivered: 0, missed: 0, dropped: 0, errors: 0, firstMs: 0, lastMs: 0 };
let deliveryLatencies: number[] = [];
let cpuMark = process.cpuUsage();

async function subscribe(count: number): Promise<void> {
  const started = performance.now();
  for (let index = 0; index < count; index += 1) {
    const client = createFleetClient({ url: setup.url, token: setup.token });
    subscribers.push(client);
    const site = setup.sites[index % setup.sites.length]!;
    const events = client.subscribe(AttestationFeedDocument, { filter: { site } });
    void (async () => {
      for await (const { attestationEvents: event } of events) {
        const now = Date.now();
        if (event.__typename === 'MissedEvents') {
          counts.missed += 1;
          counts.dropped += event.dropped;
          continue;
        }
        counts.delivered += 1;
        counts.firstMs ||= now;
        counts.lastMs = now;
        received.add(index);
        // The publisher stamps decidedAt when it publishes: same host, same clock.
        deliveryLatencies.push(now - Date.parse(event.decidedAt));
      }
    })().catch(() => {
      counts.errors += 1;
    });
    // Opening sockets in small bursts keeps the accept queue and the auth lookups from piling up.
    if (index % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  send({
    type: 'subscribed',
    subscribers: count,
    elapsedMs: performance.now() - started,
    failed: counts.errors,
  });
}

function reportCounts(): void {
  const cpu = process.cpuUsage(cpuMark);
  send({
    type: 'counts',
    ...counts,
    latency: summarise(deliveryLatencies),
    reached: received.size,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  });
}

function resetCounts(): void {
  counts = { delivered: 0, missed: 0, dropped: 0, errors: counts.errors, firstMs: 0, lastMs: 0 };
  deliveryLatencies = [];
  received.clear();
  cpuMark = process.cpuUsage();
}

process.on('message', (message: ToClient) => {
  const run = async () => {
    switch (message.type) {
      case 'fleet-closed':
        return fleetClosed(message.seconds, message.concurrency);
      case 'fleet-open':
        return fleetOpen(message.seconds, message.rate);
      case 'siem':
        return siem(message.rows, message.pageSize, message.site);
      case 'subscribe':
        return subscribe(message.subscribers);
      case 'count-reset':
        return resetCounts();
      case 'count-report':
        return reportCounts();
      case 'exit':
        await Promise.all(subscribers.map((client) => client.close()));
        await http.close();
        process.exit(0);
    }
  };
  run().catch((error: unknown) => {
    send({ type: 'progress', line: `client failed: ${String(error)}` });
    process.exit(1);
  });
});
