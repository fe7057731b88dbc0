import path from 'node:path';
import { MikroORM, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { migrationsList } from '../../migrations/index.js';
import type { Logger } from '../observability/logger.js';
import { entities } from './entities.js';
import { findLiveEmbeddedServer } from './embedded-lock.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';

export { MikroORM };
export type { EntityManager } from '@mikro-orm/postgresql';

const POOL_MAX = 10;

export interface Database {
  readonly orm: MikroORM;
  /** "postgresql" or "embedded": shown in health and logs. */
  readonly kind: 'postgresql' | 'embedded';
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function ormOptions(clientUrl: string, logger?: Logger): Options {
  return {
    clientUrl,
    entities,
    extensions: [Migrator],
    migrations: { migrationsList, snapshot: false, transactional: true, allOrNothing: true, silent: true },
    pool: { min: 0, max: POOL_MAX },
    // The global EntityManager must never be used for work: every request forks its own.
    allowGlobalContext: false,
    debug: false,
    ...(logger ? { logger: (message: string) => logger.debug({ component: 'orm' }, message) } : {}),
  };
}

/** Opens PostgreSQL at `databaseUrl`, or the embedded database under `<dataDir>/db` when it is unset. */
export async function openDatabase(options: {
  databaseUrl: string | undefined;
  dataDir: string;
  logger: Logger;
}): Promise<Database> {
  const dbDir = path.join(options.dataDir, 'db');
  const shared = options.databaseUrl ? undefined : await findLiveEmbeddedServer(dbDir);
  const embedded =
    options.databaseUrl || shared
      ? undefined
      : await startEmbeddedPostgres(dbDir, options.logger, POOL_MAX * 2);
  const url = options.databaseUrl ?? shared ?? embedded!.url;
  let orm: MikroORM;
  try {
    orm = await MikroORM.init(ormOptions(url, options.logger));
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  return {
    orm,
    kind: options.databaseUrl ? 'postgresql' : 'embedded',
    async ping() {
      await orm.em.getConnection().execute('select 1');
    },
    async close() {
      await orm.close(true);
      await embedded?.stop();
    },
  };
}

/** Applies pending migrations; returns the names applied. */
export async function migrate(orm: MikroORM): Promise<string[]> {
  const applied = await orm.getMigrator().up();
  return applied.map((migration) => migration.name);
}
