import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { ApiToken } from '../../../src/auth/api-token.entity.js';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { AuditService } from '../../../src/audit/audit.service.js';
import { TokenService } from '../../../src/auth/token.service.js';
import { migrate, ormOptions } from '../../../src/db/database.js';
import { startEmbeddedPostgres } from '../../../src/db/embedded-postgres.js';
import { createLogger } from '../../../src/observability/logger.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { TransactionRunner } from '../../../src/shared/transaction.js';
import { migrationsList } from '../../../migrations/index.js';
import { freshDatabaseUrl } from '../../support/database.js';

const logger = createLogger({ level: 'silent', pretty: false });

async function tablesOf(orm: MikroORM): Promise<string[]> {
  const rows = await orm.em
    .getConnection()
    .execute<{ tablename: string }[]>(
      `select tablename from pg_tables where schemaname = 'public' order by tablename`,
    );
  return rows.map((row) => row.tablename);
}

async function migrateUpDownUp(url: string): Promise<string[]> {
  const orm = await MikroORM.init(ormOptions(url));
  try {
    expect(await migrate(orm)).toEqual(migrationsList.map((m) => m.name));
    const tables = await tablesOf(orm);
    await orm.getMigrator().down({ to: 0 });
    expect(await tablesOf(orm)).toEqual(['mikro_orm_migrations']);
    await migrate(orm);
    expect(await tablesOf(orm)).toEqual(tables);
    return tables;
  } finally {
    await orm.close(true);
  }
}

describe('migrations', () => {
  it.runIf(inject('databaseMode') === 'postgresql')(
    'run up, down and up on an empty PostgreSQL',
    async () => {
      const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await admin.connect();
      const name = `fp_empty_${process.pid}_${Date.now()}`;
      await admin.query(`create database ${name}`);
      try {
        const url = new URL(process.env.DATABASE_URL!);
        url.pathname = `/${name}`;
        const tables = await migrateUpDownUp(url.toString());
        expect(tables).toEqual(
          expect.arrayContaining([
            'api_token',
            'audit_event',
            'device',
            'device_certificate',
            'enrollment_token',
            'mikro_orm_migrations',
          ]),
        );
      } finally {
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      }
    },
  );

  it('run up, down and up on a new embedded database', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-pglite-'));
    const embedded = await startEmbeddedPostgres(dir, logger, 4);
    try {
      const tables = await migrateUpDownUp(embedded.url);
      expect(tables).toEqual(
        expect.arrayContaining([
          'api_token',
          'audit_event',
          'device',
          'device_certificate',
          'enrollment_token',
          'mikro_orm_migrations',
        ]),
      );
    } finally {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('entities', () => {
  it('round-trip through the database unchanged', async () => {
    const orm = await MikroORM.init(ormOptions(await freshDatabaseUrl()));
    try {
      const clock = new ManualClock(new Date('2026-11-23T01:02:03.456Z'));
      const audit = new AuditService(clock);
      const tokens = new TokenService(audit, new TransactionRunner({ publish: () => {} }), clock);
      const { record } = await tokens.create(orm.em.fork(), {
        name: 'round-trip',
        role: 'facilities',
        expiresAt: new Date('2027-01-01T00:00:00.000Z'),
        actor: 'test',
      });

      const token = await orm.em.fork().findOneOrFail(ApiToken, { id: record.id });
      expect(token).toMatchObject({
        name: 'round-trip',
        role: 'facilities',
        tokenHash: record.tokenHash,
        createdAt: clock.now(),
        expiresAt: new Date('2027-01-01T00:00:00.000Z'),
        revokedAt: null,
      });

      const [event] = await orm.em.fork().find(AuditEvent, {}, { orderBy: { seq: 'asc' } });
      expect(event).toMatchObject({
        seq: '1',
        occurredAt: clock.now(),
        actor: 'test',
        action: 'token.created',
        subject: `token:${record.id}`,
        details: { name: 'round-trip', role: 'facilities', expiresAt: '2027-01-01T00:00:00.000Z' },
        prevHash: '0'.repeat(64),
      });
      expect(event!.hash).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await orm.close(true);
    }
  });
});
