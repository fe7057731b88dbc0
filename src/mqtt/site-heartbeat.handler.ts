import type { Services } from '../services.js';
import { SiteNotFoundError } from '../sites/site.errors.js';
import type { ServiceMqttClient } from './service-client.js';
import { parseTopic, serviceTopicFilters } from './topics.js';

/** A heartbeat is its arrival; a controller may add a few status fields, nothing large. */
const MAX_HEARTBEAT_PAYLOAD = 4 * 1024;

/**
 * Heartbeats on cps/site/{site_id}/heartbeat. The embedded broker only lets the site's controller
 * publish there (with Mosquitto, the ACL in the README does); liveness is SiteService's business.
 */
export async function handleSiteHeartbeats(client: ServiceMqttClient, services: Services): Promise<void> {
  const log = services.logger.child({ component: 'mqtt-site-heartbeat' });
  await client.subscribe(serviceTopicFilters.siteHeartbeat, async ({ topic, payload }) => {
    const parsed = parseTopic(topic);
    if (parsed?.kind !== 'siteHeartbeat') return;
    if (payload.length > MAX_HEARTBEAT_PAYLOAD) {
      services.metrics.mqttMessages.inc({ kind: 'site-heartbeat', result: 'oversized' });
      return;
    }
    try {
      await services.sites.recordHeartbeat(services.database.orm.em.fork(), parsed.siteId, {
        channel: 'mqtt',
      });
      services.metrics.mqttMessages.inc({ kind: 'site-heartbeat', result: 'recorded' });
    } catch (error) {
      if (!(error instanceof SiteNotFoundError)) throw error;
      services.metrics.mqttMessages.inc({ kind: 'site-heartbeat', result: 'unknown-site' });
      log.warn({ siteId: parsed.siteId }, 'heartbeat for a site that is not defined');
    }
  });
}
