import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * PGlite is one process's database: a second process opening the same directory would corrupt it.
 * The process that opens it records its socket address here, and CLI commands run beside a live
 * service (`fleetproof token create`, `audit verify`) connect through that socket instead.
 */
interface EmbeddedServerRecord {
  pid: number;
  url: string;
}

const RECORD_FILE = 'embedded-server.json';

export async function findLiveEmbeddedServer(dbDir: string): Promise<string | undefined> {
  let record: EmbeddedServerRecord;
  try {
    record = JSON.parse(await readFile(path.join(dbDir, RECORD_FILE), 'utf8')) as EmbeddedServerRecord;
  } catch {
    return undefined;
  }
  if (record.pid === process.pid || !isAlive(record.pid)) return undefined;
  return record.url;
}

export async function recordEmbeddedServer(dbDir: string, url: string): Promise<void> {
  await writeFile(path.join(dbDir, RECORD_FILE), JSON.stringify({ pid: process.pid, url }), { mode: 0o600 });
}

export async function forgetEmbeddedServer(dbDir: string): Promise<void> {
  await rm(path.join(dbDir, RECORD_FILE), { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
