import type { Config } from '../config.js';
import { migrate, openDatabase } from '../db/database.js';
import { closeConnections, createServices, startService } from '../main.js';
import type { Logger } from '../observability/logger.js';
import { verifyAuditChain } from '../audit/audit.service.js';

export async function runServe(config: Config, logger: Logger): Promise<void> {
  const running = await startService(config, logger);
  const { urls } = running.app;
  logger.info({ ...urls, database: running.services.database.kind }, 'fleetproof is running');
  process.stdout.write(
    [
      '',
      `  GraphQL (GraphiQL)  ${urls.graphql}`,
      `  HTTPS / EST base    ${urls.est}`,
      `  MQTT (mutual TLS)   ${urls.mqtt}`,
      `  Health              ${urls.http}/api/v1/health`,
      `  Root CA             ${config.dataDir}/pki/root-ca.pem`,
      '',
      '  Create an operator token:  npm run fleetproof -- token create --role admin --name <you>',
      '',
    ].join('\n') + '\n',
  );

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    running
      .stop()
      .then(() => {
        logger.info('stopped');
        process.exitCode = 0;
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exitCode = 1;
      });
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

export async function runMigrate(config: Config, logger: Logger): Promise<number> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  try {
    const applied = await migrate(database.orm);
    process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
    return 0;
  } finally {
    await database.close();
  }
}

export async function runTokenCreate(
  config: Config,
  logger: Logger,
  options: { role: string; name: string; site?: string; expiresInDays?: number },
): Promise<number> {
  const services = await createServices(config, logger);
  try {
    const expiresAt =
      options.expiresInDays !== undefined
        ? new Date(Date.now() + options.expiresInDays * 86_400_000)
        : undefined;
    const { token, record } = await services.tokens.create(services.database.orm.em.fork(), {
      name: options.name,
      role: options.role,
      siteId: options.site ?? null,
      ...(expiresAt ? { expiresAt } : {}),
      actor: `cli:${process.env.USER ?? 'unknown'}`,
    });
    process.stdout.write(`${token}\n`);
    process.stderr.write(
      `token ${record.id} (${record.role}) created for ${record.name}; it is shown only once\n`,
    );
    return 0;
  } finally {
    await closeConnections(services);
  }
}

export async function runAuditVerify(config: Config, logger: Logger): Promise<number> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  try {
    await migrate(database.orm);
    const result = await verifyAuditChain(database.orm.em.fork(), (checked) =>
      process.stderr.write(`checked ${checked} events\n`),
    );
    if (result.ok) {
      process.stdout.write(`audit chain intact: ${result.checked} events\n`);
      return 0;
    }
    process.stdout.write(
      `audit chain BROKEN at seq ${result.brokenAt!.seq} (${result.brokenAt!.reason}); ${result.checked} events before it are intact\n`,
    );
    return 1;
  } finally {
    await database.close();
  }
}
