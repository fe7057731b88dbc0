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

/**
 * `toStderr` keeps stdout for a command's own output (a token secret, a verification verdict), as
 * one-shot CLI commands need; the long-running service logs to stdout.
 */
export function createLogger(options: {
  level: LevelWithSilent;
  pretty?: boolean;
  toStderr?: boolean;
}): Logger {
  const fd = options.toStderr ? 2 : 1;
  const pretty =
    options.pretty ??
    ((fd === 2 ? process.stderr : process.stdout).isTTY && process.env.NODE_ENV !== 'production');
  const base = {
    level: options.level,
    base: { service: 'fleetproof' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  if (pretty) {
    return pino({
      ...base,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', destination: fd },
      },
    });
  }
  // One-shot commands exit right after their work: their (stderr) log lines are written synchronously.
  return pino(base, pino.destination({ dest: fd, sync: fd === 2 }));
}
