import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { startPeriodicTask, type PeriodicTask } from '../shared/periodic-task.js';
import type { RiskService } from './risk.service.js';

const BATCH_SIZE = 200;
/** One tick works at most this long, so a large rescoring yields the connection pool regularly. */
const TICK_BUDGET_MS = 2_000;

/**
 * Rescoring in the background: after a bundle is published (every device of the type, with progress in
 * logs and the backlog gauge) and for decay. State lives in the device rows, so instances share it.
 */
export function startRiskScheduler(options: {
  service: RiskService;
  entityManager: () => EntityManager;
  logger: Logger;
  metrics: Metrics;
  intervalMs: number;
}): PeriodicTask {
  return startPeriodicTask({
    name: 'risk',
    intervalMs: options.intervalMs,
    logger: options.logger,
    pass: async (isStopped) => {
      const started = performance.now();
      for (;;) {
        const done = await options.service.rescoreDue(options.entityManager(), BATCH_SIZE);
        if (done.policy > 0) {
          const backlog = await options.service.policyBacklog(options.entityManager());
          options.metrics.riskRescoreBacklog.set(backlog);
          options.logger.info({ rescored: done.policy, remaining: backlog }, 'policy rescoring progress');
        }
        const more = done.policy === BATCH_SIZE || done.decay === BATCH_SIZE;
        if (!more || isStopped() || performance.now() - started > TICK_BUDGET_MS) break;
      }
    },
  });
}
