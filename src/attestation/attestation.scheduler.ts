import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { startPeriodicTask, type PeriodicTask } from '../shared/periodic-task.js';
import type { AttestationService, ChallengeTransport } from './attestation.service.js';

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
    pass: async () => {
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
    },
  });
}
