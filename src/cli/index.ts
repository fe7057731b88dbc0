#!/usr/bin/env node
import 'reflect-metadata';
import { Command, Option } from 'commander';
import { ROLES } from '../auth/api-token.entity.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { BEHAVIOURS } from '../simulator/behaviours.js';
import { runSimulation, type SimulateOptions } from '../simulator/simulate.command.js';
import { VERSION } from '../version.js';
import { runAuditVerify, runMigrate, runServe, runTokenCreate } from './commands.js';

function setup(options: { logToStderr: boolean } = { logToStderr: true }): {
  config: Config;
  logger: Logger;
} {
  try {
    const config = loadConfig();
    return { config, logger: createLogger({ level: config.logLevel, toStderr: options.logToStderr }) };
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
    const { config, logger } = setup({ logToStderr: false });
    await runServe(config, logger);
  });

program
  .command('migrate')
  .description('apply pending database migrations and exit')
  .action(async () => {
    const { config, logger } = setup();
    process.exitCode = await runMigrate(config, logger);
  });

const token = program.command('token').description('operator, integration and site controller tokens');
token
  .command('create')
  .description('create a token; its secret is printed once')
  .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
  .requiredOption('--name <name>', 'who or what holds it')
  .option('--site <site_id>', 'the site a site-role token sends heartbeats for (that role only)')
  .option('--expires-in-days <days>', 'expire after this many days', (value) => Number.parseInt(value, 10))
  .action(async (options: { role: string; name: string; site?: string; expiresInDays?: number }) => {
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

program
  .command('simulate')
  .description('virtual DICE devices that register, enroll over EST, connect over MQTT and answer challenges')
  .option('--devices <n>', 'how many devices', (value) => Number.parseInt(value, 10), 1)
  .option(
    '--behaviour <spec>',
    `one of ${BEHAVIOURS.join('|')}, or a mix such as honest:80,silent:20`,
    'honest',
  )
  .option('--api <url>', 'HTTPS base of the EST listener', 'https://127.0.0.1:8443')
  .option('--http <url>', 'HTTP base of the REST routes and GraphQL', 'http://127.0.0.1:8080')
  .option('--broker <url>', 'MQTT broker', 'mqtts://127.0.0.1:8883')
  .option('--ca <file>', 'root CA certificate (PEM)', './data/pki/root-ca.pem')
  .option('--facilities-token <token>', 'registers the devices (or FLEETPROOF_FACILITIES_TOKEN)')
  .option('--operator-token <token>', 'approves them and follows results (or FLEETPROOF_OPERATOR_TOKEN)')
  .option('--approve', 'approve each device after enrollment', false)
  .option('--prefix <prefix>', 'device id prefix', 'sim')
  .option('--type <type>', 'device type', 'PLC')
  .option('--concurrency <n>', 'devices provisioned in parallel', (value) => Number.parseInt(value, 10), 8)
  .option('--duration <seconds>', 'stop after this long (default: until Ctrl-C)', (value) =>
    Number.parseInt(value, 10),
  )
  .option('--slow-ms <ms>', 'answer delay of slow devices', (value) => Number.parseInt(value, 10), 15_000)
  .action(
    async (
      options: Omit<SimulateOptions, 'facilitiesToken' | 'operatorToken' | 'duration'> & {
        facilitiesToken?: string;
        operatorToken?: string;
        duration?: number;
      },
    ) => {
      process.exitCode = await runSimulation({
        ...options,
        facilitiesToken: options.facilitiesToken ?? process.env.FLEETPROOF_FACILITIES_TOKEN,
        operatorToken: options.operatorToken ?? process.env.FLEETPROOF_OPERATOR_TOKEN,
        duration: options.duration,
      });
    },
  );

await program.parseAsync(process.argv);
