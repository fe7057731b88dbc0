import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabaseUrl } from '../../support/database.js';
import { runCli } from '../../support/cli.js';

let databaseUrl: string;
let dataDir: string;

beforeAll(async () => {
  databaseUrl = await freshDatabaseUrl();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-audit-'));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const env = () => ({
  DATABASE_URL: databaseUrl,
  FLEETPROOF_DATA_DIR: dataDir,
  FLEETPROOF_CA_PASSPHRASE: 'test-passphrase-not-secret',
  LOG_LEVEL: 'warn',
});

describe('fleetproof audit verify', () => {
  it('passes on a clean chain and names the first row after one is edited', async () => {
    for (const name of ['alice', 'bob', 'carol']) {
      const created = await runCli(['token', 'create', '--role', 'operator', '--name', name], env());
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout.trim()).toMatch(/^fpt_[\w-]{43}$/);
    }

    const clean = await runCli(['audit', 'verify'], env());
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toContain('audit chain intact: 3 events');

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(
        `update audit_event set details = jsonb_set(details, '{role}', '"admin"') where seq = 2`,
      );
    } finally {
      await client.end();
    }

    const broken = await runCli(['audit', 'verify'], env());
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('BROKEN at seq 2 (hash-mismatch)');
  });
});
