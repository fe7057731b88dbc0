import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { Logger } from '../observability/logger.js';
import { forgetEmbeddedServer, recordEmbeddedServer } from './embedded-lock.js';

export interface EmbeddedPostgres {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * PGlite (PostgreSQL compiled to WebAssembly) behind a loopback PostgreSQL wire-protocol socket, so the
 * stock `pg` driver, the same ORM configuration and the same migrations serve both the embedded
 * default and a real server. It has no authentication: it only ever binds to 127.0.0.1.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  logger: Logger,
  maxConnections: number,
): Promise<EmbeddedPostgres> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const started = performance.now();
  const db = await PGlite.create({ dataDir });
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections });
  await server.start();
  // getServerConn() answers "host:port".
  const url = `postgres://postgres@${server.getServerConn()}/postgres`;
  await recordEmbeddedServer(dataDir, url);
  logger.info({ dataDir, ms: Math.round(performance.now() - started) }, 'embedded PostgreSQL (PGlite) ready');
  return {
    url,
    async stop() {
      await forgetEmbeddedServer(dataDir);
      await server.stop();
      await db.close();
    },
  };
}
