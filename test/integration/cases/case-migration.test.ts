import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { migrationsList } from '../../../migrations/index.js';
import { ormOptions } from '../../../src/db/database.js';
import { startEmbeddedPostgres } from '../../../src/db/embedded-postgres.js';
import { createLogger } from '../../../src/observability/logger.js';

const BEFORE_CASES = 'Migration20261129000000_device_operations';

/** An empty database of the mode the suite runs in, and how to drop it. */
async function emptyDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (inject('databaseMode') === 'postgresql') {
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    const name = `fp_cases_${process.pid}_${Date.now()}`;
    await admin.query(`create database ${name}`);
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      async drop() {
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      },
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-cases-'));
  const embedded = await startEmbeddedPostgres(dir, createLogger({ level: 'silent', pretty: false }), 4);
  return {
    url: embedded.url,
    async drop() {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('the cases migration', () => {
  it('keeps the history of existing cases and closes duplicates so one case stays open', async () => {
    expect(migrationsList.map((migration) => migration.name)).toContain(BEFORE_CASES);
    const database = await emptyDatabase();
    const orm = await MikroORM.init(ormOptions(database.url));
    try {
      const sql = <T extends object>(text: string, params: unknown[] = []) =>
        orm.em.getConnection().execute<T[]>(text, params);
      await orm.getMigrator().up({ to: BEFORE_CASES });
      await sql(`
        insert into "device" ("id", "device_id", "type", "criticality", "attestation_status", "enrollment_state", "registered_at", "updated_at")
        values ('00000000-0000-4000-8000-000000000001', 'plc-old', 'PLC', 'critical', 'FAILED', 'APPROVED', now(), now())`);
      // What the minimal cases code wrote: appended evidence in the row, and (after a race) a twin.
      await sql(`
        insert into "case_record" ("id", "number", "title", "severity", "status", "source", "device_ref", "evidence", "opened_at", "updated_at")
        values
          ('00000000-0000-4000-8000-0000000000a1', 1, 'failed', 'CRITICAL', 'OPEN', 'ATTESTATION_FAILURE',
           '00000000-0000-4000-8000-000000000001',
           '{"reasons": ["FIRMWARE_MISMATCH"], "appended": [{"at": "2026-11-20T10:00:00.000Z", "reasons": ["SIGNATURE_INVALID"]}, {"at": "2026-11-20T11:00:00.000Z", "reasons": ["STALE_TIMESTAMP"]}]}',
           '2026-11-20T09:00:00Z', '2026-11-20T11:00:00Z'),
          ('00000000-0000-4000-8000-0000000000a2', 2, 'failed again', 'CRITICAL', 'INVESTIGATING', 'ATTESTATION_FAILURE',
           '00000000-0000-4000-8000-000000000001', '{"reasons": ["FIRMWARE_MISMATCH"]}',
           '2026-11-20T09:00:01Z', '2026-11-20T09:00:01Z'),
          ('00000000-0000-4000-8000-0000000000a3', 3, 'no device', 'LOW', 'CLOSED', 'MANUAL', null, '{}',
           '2026-11-20T09:00:02Z', '2026-11-20T09:00:02Z')`);

      await orm.getMigrator().up();

      // Timestamps as epoch milliseconds: the ORM's connection hands timestamptz over as text.
      const epoch = (column: string) => `(extract(epoch from ${column}) * 1000)::float8`;
      const cases = await sql<{
        number: number;
        status: string;
        evidence: unknown;
        closed_at: number | null;
      }>(
        `select "number", "status", "evidence", ${epoch('"closed_at"')} as "closed_at" from "case_record" order by "number"`,
      );
      expect(cases).toEqual([
        { number: 1, status: 'OPEN', evidence: { reasons: ['FIRMWARE_MISMATCH'] }, closed_at: null },
        {
          number: 2,
          status: 'CLOSED',
          evidence: { reasons: ['FIRMWARE_MISMATCH'] },
          closed_at: expect.any(Number) as unknown,
        },
        { number: 3, status: 'CLOSED', evidence: {}, closed_at: Date.parse('2026-11-20T09:00:02Z') },
      ]);
      const links = await sql<{ case_ref: string }>(
        `select "case_ref" from "case_device" order by "case_ref"`,
      );
      expect(links.map((link) => link.case_ref)).toEqual([
        '00000000-0000-4000-8000-0000000000a1',
        '00000000-0000-4000-8000-0000000000a2',
      ]);
      const events = await sql<{
        number: number;
        kind: string;
        at: number;
        body: string | null;
        payload: unknown;
      }>(
        `select c."number", e."kind", ${epoch('e."at"')} as "at", e."body", e."payload" from "case_event" e
           join "case_record" c on c."id" = e."case_ref" order by e."seq"`,
      );
      expect(events.filter((event) => event.number === 1)).toEqual([
        {
          number: 1,
          kind: 'OPENED',
          at: Date.parse('2026-11-20T09:00:00Z'),
          body: 'failed',
          payload: {
            source: 'ATTESTATION_FAILURE',
            severity: 'CRITICAL',
            evidence: { reasons: ['FIRMWARE_MISMATCH'] },
          },
        },
        {
          number: 1,
          kind: 'EVIDENCE',
          at: Date.parse('2026-11-20T10:00:00Z'),
          body: null,
          payload: { severity: 'CRITICAL', evidence: { reasons: ['SIGNATURE_INVALID'] } },
        },
        {
          number: 1,
          kind: 'EVIDENCE',
          at: Date.parse('2026-11-20T11:00:00Z'),
          body: null,
          payload: { severity: 'CRITICAL', evidence: { reasons: ['STALE_TIMESTAMP'] } },
        },
      ]);
      expect(events.filter((event) => event.number === 2).map((event) => [event.kind, event.body])).toEqual([
        ['OPENED', 'failed again'],
        ['STATUS_CHANGED', 'duplicate of case 1'],
      ]);
      await expect(sql(`update "case_record" set "status" = 'OPEN' where "number" = 2`)).rejects.toThrow(
        /case_record_one_open/,
      );

      await orm.getMigrator().down({ to: BEFORE_CASES });
      const tables = await sql<{ tablename: string }>(
        `select tablename from pg_tables where schemaname = 'public' and tablename like 'case_%' order by 1`,
      );
      expect(tables.map((table) => table.tablename)).toEqual(['case_record']);
    } finally {
      await orm.close(true);
      await database.drop();
    }
  });
});
