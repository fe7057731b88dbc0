import type { Registry } from 'prom-client';
import type { Router } from './router.js';
import { sendJson } from './problem.js';

export type ComponentStatus = { status: 'up' | 'down'; detail: Record<string, unknown> | string };

/** A named health probe; the health route runs them all, each with a time limit. */
export interface HealthCheck {
  name: string;
  check(): Promise<ComponentStatus>;
}

const CHECK_TIMEOUT_MS = 2_000;

async function runCheck(check: HealthCheck): Promise<ComponentStatus> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ComponentStatus>((resolve) => {
    timer = setTimeout(
      () => resolve({ status: 'down', detail: `no answer within ${CHECK_TIMEOUT_MS} ms` }),
      CHECK_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([check.check(), timeout]);
  } catch (error) {
    return { status: 'down', detail: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export function addHealthRoutes(
  router: Router,
  checks: readonly HealthCheck[],
  metrics: { registry: Registry; componentUp: { set(labels: { component: string }, value: number): void } },
): void {
  router.add('GET', '/api/v1/health', async ({ res }) => {
    const results = await Promise.all(
      checks.map(async (check) => [check.name, await runCheck(check)] as const),
    );
    const allUp = results.every(([, result]) => result.status === 'up');
    for (const [name, result] of results)
      metrics.componentUp.set({ component: name }, result.status === 'up' ? 1 : 0);
    sendJson(res, allUp ? 200 : 503, {
      status: allUp ? 'ok' : 'unavailable',
      checks: Object.fromEntries(results),
    });
  });

  router.add('GET', '/metrics', async ({ res }) => {
    const body = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(body);
  });
}
