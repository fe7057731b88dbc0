import { z } from 'zod';
import type { VersionedSettings } from '../attestation/attestation-settings.service.js';
import { roleHasScope } from '../auth/roles.js';
import { actorOf } from '../auth/token.service.js';
import type { Services } from '../services.js';
import { ValidationError } from '../shared/errors.js';
import { requireScope } from './auth.js';
import { readJson } from './body.js';
import { withProblems } from './errors.js';
import { sendJson } from './problem.js';
import type { Router, RouteRequest } from './router.js';

/** The runbook's body: `{"cps_attestation": {...}, "reason"?}`; unknown keys are refused, not ignored. */
const patchSchema = z
  .object({
    cps_attestation: z
      .object({
        nonce_size: z.number().int(),
        challenge_interval_critical_s: z.number().int(),
        challenge_interval_standard_s: z.number().int(),
        allowed_clock_skew_s: z.number().int(),
        attestation_timeout_s: z.number().int(),
        failure_threshold: z.number().int(),
      })
      .partial()
      .strict(),
    reason: z.string().max(500).optional(),
  })
  .strict();

function settingsJson(settings: VersionedSettings) {
  return {
    version: settings.version,
    cps_attestation: settings.values,
    changed_by: settings.changedBy,
    reason: settings.reason,
    updated_at: settings.createdAt.toISOString(),
  };
}

/** Runtime settings in the operators' runbook form; the rules are AttestationSettingsService's. */
export function addSettingsRoutes(router: Router, services: Services): void {
  router.add(
    'GET',
    '/api/v1/settings/runtime',
    withProblems<RouteRequest>(async ({ raw, res }) => {
      await requireScope(services, raw, 'viewer');
      sendJson(
        res,
        200,
        settingsJson(await services.attestationSettings.current(services.database.orm.em.fork())),
      );
    }),
  );

  router.add(
    'PATCH',
    '/api/v1/settings/runtime',
    withProblems<RouteRequest>(async ({ raw, res }) => {
      const viewer = await requireScope(services, raw, 'operator');
      const parsed = patchSchema.safeParse(await readJson(raw, 16 * 1024));
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new ValidationError(issue.path.join('.') || 'body', issue.message);
      }
      const updated = await services.attestationSettings.update(
        services.database.orm.em.fork(),
        parsed.data.cps_attestation,
        { actor: actorOf(viewer), isAdmin: roleHasScope(viewer.role, 'admin') },
        parsed.data.reason,
      );
      sendJson(res, 200, settingsJson(updated));
    }),
  );
}
