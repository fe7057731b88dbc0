import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { AttestationService, ChallengeTransport } from './attestation.service.js';

export interface AttestationScheduler {
  /** Runs one pass now (issue due challenges, expire overdue ones); tests drive time with it. */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Drives the durable schedule: every `intervalMs` it claims due devices and times out overdue
 * challenges. All state is in the database, so any number of instances can run this side by side.
 */
export function startAttestationScheduler(options: {
  service: AttestationService;
  transport: ChallengeTransport;
  entityManager: () => EntityManager;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}): AttestationScheduler {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  const pass = async (): Promise<void> => {
    const em = options.entityManager();
    const issued = await options.service.issueDueChallenges(em, options.transport);
    const expired = await options.service.expireOverdue(em.fork());
    const [pending] = await em.getConnection().execute<{ devices: string; challenges: string }[]>(
      `select (select count(*) from device where enrollment_state = 'ENROLLED') as devices,
                (select count(*) from attestation_challenge where state = 'OPEN') as challenges`,
    );
    options.metrics.attestationPending.set({ kind: 'device' }, Number(pending?.devices ?? 0));
    options.metrics.attestationPending.set({ kind: 'challenge' }, Number(pending?.challenges ?? 0));
    if (issued || expired) options.logger.debug({ issued, expired }, 'attestation scheduler pass');
  };

  // One pass at a time: a slow pass delays the next instead of overlapping it.
  const tick = (): Promise<void> => {
    running = running
      .then(pass)
      .catch((error: unknown) => options.logger.error({ err: error }, 'attestation pass failed'));
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
