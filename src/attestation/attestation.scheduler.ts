import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { startPeriodicTask, type PeriodicTask } from '../shared/periodic-task.js';
import { CLAIM_BATCH, type AttestationService, type ChallengeTransport } from './attestation.service.js';

/** Runs one pass now (issue due challenges, expire overdue ones) with `tick`; tests drive time with it. */
export type AttestationScheduler = PeriodicTask;

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
  return startPeriodicTask({
    name: 'attestation',
    intervalMs: options.intervalMs,
    logger: options.logger,
    pass: async (isStopped) => {
      const started = performance.now();
      // More than one batch may be due (a large fleet, a restart): keep claiming for up to one
      // interval, so issuance keeps pace with the fleet instead of CLAIM_BATCH per tick.
      const drain = async (step: () => Promise<number>): Promise<number> => {
        let total = 0;
        for (;;) {
          const done = await step();
          total += done;
          if (done < CLAIM_BATCH || isStopped() || performance.now() - started > options.intervalMs)
            return total;
        }
      };
      const em = options.entityManager();
      const issued = await drain(() => options.service.issueDueChallenges(em.fork(), options.transport));
      const expired = await drain(() => options.service.expireOverdue(em.fork()));
      const [pending] = await em.getConnection().execute<{ devices: string; challenges: string }[]>(
        `select (select count(*) from device where enrollment_state = 'ENROLLED') as devices,
                (select count(*) from attestation_challenge where state = 'OPEN') as challenges`,
      );
      options.metrics.attestationPending.set({ kind: 'device' }, Number(pending?.devices ?? 0));
      options.metrics.attestationPending.set({ kind: 'challenge' }, Number(pending?.challenges ?? 0));
      if (issued || expired) options.logger.debug({ issued, expired }, 'attestation scheduler pass');
    },
  });
}
