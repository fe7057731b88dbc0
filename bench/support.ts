import 'reflect-metadata';
import https from 'node:https';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import pg from 'pg';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface HttpResult {
  status: number;
  body: string;
}

/** One request on a keep-alive agent; network failures resolve as status 0 with the error code. */
export function post(
  agent: https.Agent,
  url: URL,
  headers: Record<string, string>,
  body: string,
): Promise<HttpResult> {
  return new Promise((resolve) => {
    const req = https.request(
      url,
      { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', (error) => resolve({ status: 0, body: errorCode(error) }));
      },
    );
    req.on('error', (error) => resolve({ status: 0, body: errorCode(error) }));
    req.end(body);
  });
}

function errorCode(error: Error): string {
  return (error as NodeJS.ErrnoException).code ?? error.message;
}

/** A fresh P-256 key and a CSR with CN = deviceId, base64 DER (the EST simpleenroll body). */
export async function generateCsr(deviceId: string): Promise<string> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, false, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys,
    signingAlgorithm: algorithm,
  });
  return Buffer.from(csr.rawData).toString('base64');
}

/** Calls `tick` once a second until the returned stop function is called. */
export function everySecond(tick: () => void): () => void {
  const timer = setInterval(tick, 1000);
  return () => clearInterval(timer);
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `op` back to back on one thread for `seconds`; returns operations per second. */
export async function opsPerSecond(seconds: number, op: () => unknown): Promise<number> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let count = 0;
  while (performance.now() < end) {
    await op();
    count += 1;
  }
  return count / ((performance.now() - start) / 1000);
}

export function machine(): string {
  const cpus = os.cpus();
  return [
    `cpu: ${cpus[0]?.model ?? 'unknown'} x ${cpus.length} (available parallelism ${os.availableParallelism()})`,
    `memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `load average: ${os
      .loadavg()
      .map((load) => load.toFixed(2))
      .join(' ')} (1, 5, 15 min)`,
    `node: ${process.version} (${process.platform}/${process.arch})`,
  ].join('\n');
}

export const fmt = (value: number, digits = 1): string =>
  Number.isFinite(value) ? value.toFixed(digits) : 'n/a';

/** A dedicated database `fp_bench_<pid>` beside the one DATABASE_URL names, dropped afterwards. */
export async function createDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `fp_bench_${process.pid}`;
  const maintenance = new URL(adminUrl);
  maintenance.pathname = '/postgres';
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: maintenance.toString() });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`drop database if exists ${name}`);
  await admin(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => admin(`drop database if exists ${name} with (force)`),
  };
}

/** The URL with any password removed, for printing. */
export function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/** The service's environment for a benchmark: ephemeral ports, quiet logs, the given database. */
export function benchEnvironment(
  dataDir: string,
  databaseUrl: string | undefined,
  extra: Record<string, string> = {},
) {
  return {
    NODE_ENV: 'test',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    FLEETPROOF_DATA_DIR: dataDir,
    FLEETPROOF_CA_PASSPHRASE: 'bench-passphrase-not-secret',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    HTTPS_PORT: '0',
    MQTT_PORT: '0',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

/**
 * CPU seconds used so far by the PostgreSQL backends connected to `database` (Linux /proc; a
 * backend's command line names its database): the database's share of a benchmark, read before and
 * after, without other sessions' databases on the same server. Background writers are not counted.
 */
export async function postgresCpuSeconds(database: string): Promise<number | undefined> {
  const ticksPerSecond = 100; // USER_HZ on Linux
  try {
    let ticks = 0;
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const command = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
        if (!command.startsWith('postgres: ') || !command.split(' ').includes(database)) continue;
        const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
      } catch {
        // the process ended while we looked
      }
    }
    return ticks / ticksPerSecond;
  } catch {
    return undefined;
  }
}
