import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import pg from 'pg';
import { MikroORM } from '@mikro-orm/postgresql';
import { ormOptions, migrate } from '../../src/db/database.js';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { createLogger } from '../../src/observability/logger.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated database to copy (PostgreSQL) or to share and truncate (embedded). */
    databaseTemplateUrl: string;
    databaseMode: 'postgresql' | 'embedded';
  }
}

/**
 * With DATABASE_URL (CI, real PostgreSQL): migrate a template database once; every test file then
 * gets its own copy (CREATE DATABASE ... TEMPLATE), so files run in parallel on isolated data.
 * Without it: one embedded PGlite for the run, shared by files that run one after another.
 */
export default async function setup(project: TestProject) {
  const logger = createLogger({ level: 'warn', pretty: false });
  const baseUrl = process.env.DATABASE_URL;
  if (baseUrl) {
    const templateName = `fp_template_${process.pid}`;
    const admin = new pg.Client({ connectionString: baseUrl });
    await admin.connect();
    await admin.query(`drop database if exists ${templateName}`);
    await admin.query(`create database ${templateName}`);
    await admin.end();
    const templateUrl = withDatabase(baseUrl, templateName);
    const orm = await MikroORM.init(ormOptions(templateUrl));
    await migrate(orm);
    await orm.close(true);
    project.provide('databaseTemplateUrl', templateUrl);
    project.provide('databaseMode', 'postgresql');
    return async () => {
      const cleanup = new pg.Client({ connectionString: baseUrl });
      await cleanup.connect();
      const { rows } = await cleanup.query<{ datname: string }>(
        `select datname from pg_database where datname like 'fp_t_${process.pid}_%' or datname = $1`,
        [templateName],
      );
      for (const row of rows) await cleanup.query(`drop database if exists ${row.datname} with (force)`);
      await cleanup.end();
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-test-db-'));
  const embedded = await startEmbeddedPostgres(dir, logger, 40);
  const orm = await MikroORM.init(ormOptions(embedded.url));
  await migrate(orm);
  await orm.close(true);
  project.provide('databaseTemplateUrl', embedded.url);
  project.provide('databaseMode', 'embedded');
  return async () => {
    await embedded.stop();
    await rm(dir, { recursive: true, force: true });
  };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
