import type { Logger } from '../observability/logger.js';

export interface PeriodicTask {
  /** Runs one pass now, after any pass in progress; tests drive time with it. */
  tick(): Promise<void>;
  /** Stops the timer and waits for the pass in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `pass` every `intervalMs`, one pass at a time: a slow pass delays the next instead of
 * overlapping it. A failing pass is logged and the next one runs as usual.
 */
export function startPeriodicTask(options: {
  name: string;
  intervalMs: number;
  logger: Logger;
  pass: (isStopped: () => boolean) => Promise<void>;
}): PeriodicTask {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const isStopped = () => stopped;

  const tick = (): Promise<void> => {
    running = running
      .then(() => options.pass(isStopped))
      .catch((error: unknown) => options.logger.error({ err: error }, `${options.name} pass failed`));
    return running;
  };

  const timer = setInterval(() => {
    if (!stopped) void tick();
  }, options.intervalMs);
  timer.unref();

  return {
    tick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
