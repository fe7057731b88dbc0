import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Paths that may carry secrets anywhere in a log object; pino replaces them before serialising. */
const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'token',
  'ott',
  'passphrase',
  'privateKey',
  'privateKeyPem',
  '*.token',
  '*.ott',
  '*.privateKeyPem',
];

export function createLogger(options: { level: LevelWithSilent; pretty?: boolean }): Logger {
  const pretty = options.pretty ?? (process.stdout.isTTY && process.env.NODE_ENV !== 'production');
  return pino({
    level: options.level,
    base: { service: 'fleetproof' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } }
      : {}),
  });
}
