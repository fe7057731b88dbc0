import type { Services } from '../services.js';
import { DomainError } from '../shared/errors.js';
import { droppedForIsolation } from './isolation.policy.js';
import type { ServiceMqttClient } from './service-client.js';
import { deviceIdOf, parseTopic, serviceTopicFilters, topics } from './topics.js';

/** An enrollment request is a handful of short fields; anything larger is not one. */
const MAX_ENROLL_PAYLOAD = 4 * 1024;

/**
 * The MQTT form of the OTT request: `{cdi_commitment, model, fw, device_type}` on cps/enroll/{id},
 * answered with `{ott, expires_at}` or `{error, message}` on cps/enroll/{id}/ott. The broker has
 * already tied the topic's device id to the publisher's certificate; the rules are OttService's.
 */
export async function handleEnrollmentRequests(client: ServiceMqttClient, services: Services): Promise<void> {
  const log = services.logger.child({ component: 'mqtt-enroll' });
  await client.subscribe(serviceTopicFilters.enroll, async ({ topic, payload }) => {
    const parsed = parseTopic(topic);
    const deviceId = parsed ? deviceIdOf(parsed) : undefined;
    if (!parsed || parsed.kind !== 'enroll' || deviceId === undefined) return;
    if (droppedForIsolation(services, 'enroll', deviceId)) return;
    const reply = (body: Record<string, unknown>) =>
      client.publish(topics.enrollOtt(deviceId), JSON.stringify(body), { qos: 1 });
    if (payload.length > MAX_ENROLL_PAYLOAD) {
      services.metrics.mqttMessages.inc({ kind: 'enroll', result: 'oversized' });
      await reply({ error: 'payload-too-large', message: `at most ${MAX_ENROLL_PAYLOAD} bytes` });
      return;
    }
    let body: Record<string, unknown>;
    try {
      const value: unknown = JSON.parse(payload.toString('utf8'));
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new Error('not an object');
      body = value as Record<string, unknown>;
    } catch {
      services.metrics.mqttMessages.inc({ kind: 'enroll', result: 'malformed' });
      await reply({ error: 'malformed-json', message: 'the request must be a JSON object' });
      return;
    }
    try {
      const issued = await services.otts.request(
        services.database.orm.em.fork(),
        {
          device_id: deviceId,
          cdi_commitment: body.cdi_commitment,
          device_type: body.device_type,
          firmware_version: body.fw,
          ...(body.firmware_hash !== undefined ? { firmware_hash: body.firmware_hash } : {}),
        },
        { address: `mqtt:${deviceId}`, channel: 'mqtt' },
      );
      services.metrics.mqttMessages.inc({ kind: 'enroll', result: 'issued' });
      await reply({ ott: issued.ott, expires_at: issued.expiresAt.toISOString() });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      services.metrics.mqttMessages.inc({ kind: 'enroll', result: 'refused' });
      log.info({ deviceId, reason: error.reason }, 'mqtt enrollment token refused');
      await reply({ error: error.reason, message: error.message });
    }
  });
}
