import type { ChallengeTransport } from '../attestation/attestation.service.js';
import type { Services } from '../services.js';
import type { ServiceMqttClient } from './service-client.js';
import { deviceIdOf, parseTopic, serviceTopicFilters, topics } from './topics.js';

/** Challenges go out QoS 1 on the device's own topic, expiring with the challenge (MQTT 5). */
export function mqttChallengeTransport(client: ServiceMqttClient): ChallengeTransport {
  return {
    publishChallenge: (deviceId, challenge, expirySeconds) =>
      client.publish(topics.attestChallenge(deviceId), JSON.stringify(challenge), {
        qos: 1,
        messageExpiryIntervalS: expirySeconds,
      }),
  };
}

/**
 * Feeds responses to the attestation service. The per-device topic is attributed by the broker's
 * ACL; on the runbook's bare topic attribution rests on the signature alone (decided in the service).
 */
export async function handleAttestationResponses(
  client: ServiceMqttClient,
  services: Services,
): Promise<void> {
  const handler = async ({ topic, payload }: { topic: string; payload: Buffer }) => {
    const parsed = parseTopic(topic);
    if (!parsed || (parsed.kind !== 'attestResponse' && parsed.kind !== 'attestResponseBare')) return;
    const disposition = await services.attestation.handleResponse(services.database.orm.em, payload, {
      topicDeviceId: deviceIdOf(parsed),
      receivedAt: services.clock.now(),
    });
    services.metrics.mqttMessages.inc({ kind: 'attest-response', result: disposition });
  };
  await client.subscribe(
    [serviceTopicFilters.attestResponse, serviceTopicFilters.attestResponseBare],
    handler,
  );
}
