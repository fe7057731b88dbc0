/**
 * The load generator of the enroll benchmark, in a worker thread so that key generation, TLS and
 * HTTP parsing on the client side do not share the service's event loop.
 */
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { parentPort, workerData } from 'node:worker_threads';
import { generateCsr, post } from './support.js';

export interface ClientSetup {
  httpsUrl: string;
  rootPem: string;
  concurrency: number;
}

export type ToClient =
  { type: 'generate'; deviceIds: string[] } | { type: 'run'; seconds: number } | { type: 'exit' };

export interface RunResult {
  ok: number;
  elapsedMs: number;
  exhausted: boolean;
  /** Milliseconds of each successful pair, and of its two halves. */
  pair: Float64Array;
  ott: Float64Array;
  est: Float64Array;
  errors: Record<string, { count: number; sample: string }>;
}

export type FromClient =
  | { type: 'generated'; done: number; total: number; final: boolean }
  | { type: 'progress'; ok: number; failed: number; elapsedMs: number }
  | { type: 'result'; result: RunResult };

const setup = workerData as ClientSetup;
const port = parentPort!;
const send = (message: FromClient) => port.postMessage(message);
const agent = new https.Agent({ keepAlive: true, maxSockets: setup.concurrency, ca: setup.rootPem });
const ottUrl = new URL('/api/v1/cps/ott/request', setup.httpsUrl);
const estUrl = new URL('/.well-known/est/simpleenroll', setup.httpsUrl);

/** Devices with a pre-generated CSR, consumed in order; each enrolls once. */
const pool: Array<{ deviceId: string; csr: string }> = [];
let used = 0;

async function generate(deviceIds: string[]): Promise<void> {
  const batch = 32;
  let lastReport = performance.now();
  for (let start = 0; start < deviceIds.length; start += batch) {
    const ids = deviceIds.slice(start, start + batch);
    const csrs = await Promise.all(ids.map((id) => generateCsr(id)));
    ids.forEach((deviceId, index) => pool.push({ deviceId, csr: csrs[index]! }));
    if (performance.now() - lastReport >= 1000) {
      lastReport = performance.now();
      send({ type: 'generated', done: start + ids.length, total: deviceIds.length, final: false });
    }
  }
  send({ type: 'generated', done: deviceIds.length, total: deviceIds.length, final: true });
}

async function run(seconds: number): Promise<RunResult> {
  const pair: number[] = [];
  const ott: number[] = [];
  const est: number[] = [];
  const errors: RunResult['errors'] = {};
  let failed = 0;
  let exhausted = false;
  const fail = (key: string, body: string) => {
    failed += 1;
    const entry = (errors[key] ??= { count: 0, sample: body.slice(0, 200) });
    entry.count += 1;
  };
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const ticker = setInterval(
    () => send({ type: 'progress', ok: pair.length, failed, elapsedMs: performance.now() - start }),
    1000,
  );
  const worker = async () => {
    while (performance.now() < deadline) {
      const job = pool[used];
      if (!job) {
        exhausted = true;
        return;
      }
      used += 1;
      const t0 = performance.now();
      const issued = await post(
        agent,
        ottUrl,
        { 'content-type': 'application/json' },
        JSON.stringify({
          device_id: job.deviceId,
          cdi_commitment: `sha256:${randomBytes(32).toString('hex')}`,
          device_type: 'PLC',
          firmware_version: '1.0.0',
        }),
      );
      if (issued.status !== 201) {
        fail(`ott ${issued.status}`, issued.body);
        continue;
      }
      const t1 = performance.now();
      const token = (JSON.parse(issued.body) as { ott: string }).ott;
      const enrolled = await post(
        agent,
        estUrl,
        { 'content-type': 'application/pkcs10', authorization: `Bearer ${token}` },
        job.csr,
      );
      if (enrolled.status !== 200) {
        fail(`est ${enrolled.status}`, enrolled.body);
        continue;
      }
      const t2 = performance.now();
      pair.push(t2 - t0);
      ott.push(t1 - t0);
      est.push(t2 - t1);
    }
  };
  await Promise.all(Array.from({ length: setup.concurrency }, worker));
  clearInterval(ticker);
  const sorted = (values: number[]) => Float64Array.from(values).sort();
  return {
    ok: pair.length,
    elapsedMs: performance.now() - start,
    exhausted,
    pair: sorted(pair),
    ott: sorted(ott),
    est: sorted(est),
    errors,
  };
}

port.on('message', (message: ToClient) => {
  switch (message.type) {
    case 'generate':
      void generate(message.deviceIds);
      break;
    case 'run':
      void run(message.seconds).then((result) => send({ type: 'result', result }));
      break;
    case 'exit':
      agent.destroy();
      port.close();
      break;
  }
});
