import type { Services } from '../services.js';
import { actorOf } from '../auth/token.service.js';
import { readBody } from './body.js';
import { withProblems } from './errors.js';
import { requireToken } from './auth.js';
import { sendJson } from './problem.js';
import type { Router, RouteRequest } from './router.js';

/** Same bound as the MQTT heartbeat: a heartbeat is its arrival plus a few status fields at most. */
const HEARTBEAT_LIMIT = 4 * 1024;

/** Site controllers without MQTT: the heartbeat over HTTP, with a token bound to their site. */
export function addSiteRoutes(router: Router, services: Services): void {
  router.add(
    'POST',
    '/api/v1/cps/sites/{site_id}/heartbeat',
    withProblems<RouteRequest>(async ({ raw, res, params }) => {
      const viewer = await requireToken(services, raw);
      // The body is optional and informational; it is read (bounded) so the connection can be reused.
      await readBody(raw, HEARTBEAT_LIMIT);
      const siteId = params.site_id!;
      const receivedAt = await services.sites.recordHeartbeat(services.database.orm.em.fork(), siteId, {
        channel: 'rest',
        actor: actorOf(viewer),
        role: viewer.role,
        siteId: viewer.siteId,
      });
      sendJson(res, 200, { site_id: siteId, liveness: 'LIVE', received_at: receivedAt.toISOString() });
    }),
  );
}
