#!/usr/bin/env node
import 'reflect-metadata';
import { Command, Option } from 'commander';
import { ROLES } from '../auth/api-token.entity.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { VERSION } from '../version.js';
import { runAuditVerify, runMigrate, runServe, runTokenCreate } from './commands.js';

function setup(): { config: Config; logger: Logger } {
  try {
    const config = loadConfig();
    return { config, logger: createLogger({ level: config.logLevel }) };
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`fleetproof: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
}

const program = new Command('fleetproof')
  .description('Hardware-anchored device identity and continuous firmware attestation')
  .version(VERSION);

program
  .command('serve', { isDefault: true })
  .description('run the service (GraphQL, REST/EST, MQTT, CA)')
  .action(async () => {
    const { config, logger } = setup();
    await runServe(config, logger);
  });

program
  .command('migrate')
  .description('apply pending database migrations and exit')
  .action(async () => {
    const { config, logger } = setup();
    process.exitCode = await runMigrate(config, logger);
  });

const token = program.command('token').description('operator and integration tokens');
token
  .command('create')
  .description('create a token; its secret is printed once')
  .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
  .requiredOption('--name <name>', 'who or what holds it')
  .option('--expires-in-days <days>', 'expire after this many days', (value) => Number.parseInt(value, 10))
  .action(async (options: { role: string; name: string; expiresInDays?: number }) => {
    const { config, logger } = setup();
    process.exitCode = await runTokenCreate(config, logger, options);
  });

const audit = program.command('audit').description('the tamper-evident audit trail');
audit
  .command('verify')
  .description('walk the hash chain and report the first broken link')
  .action(async () => {
    const { config, logger } = setup();
    process.exitCode = await runAuditVerify(config, logger);
  });

await program.parseAsync(process.argv);
