import type { Services } from '../services.js';
import { droppedForIsolation } from './isolation.policy.js';
import type { ServiceMqttClient } from './service-client.js';
import { deviceIdOf, parseTopic, serviceTopicFilters } from './topics.js';

/**
 * Telemetry on cps/telemetry/{device_id} (QoS 0 or 1). The broker ties the topic to the publisher's
 * certificate; what counts as an anomaly is the risk domain's business, per the device's bundle.
 */
export async function handleTelemetry(client: ServiceMqttClient, services: Services): Promise<void> {
  await client.subscribe(serviceTopicFilters.telemetry, async ({ topic, payload }) => {
    const parsed = parseTopic(topic);
    const deviceId = parsed?.kind === 'telemetry' ? deviceIdOf(parsed) : undefined;
    if (deviceId === undefined || droppedForIsolation(services, 'telemetry', deviceId)) return;
    const result = await services.risk.ingestTelemetry(services.database.orm.em.fork(), deviceId, payload);
    services.metrics.mqttMessages.inc({ kind: 'telemetry', result });
  });
}
