import type { Services } from '../services.js';
import type { ServiceMqttClient } from './service-client.js';
import { deviceIdOf, parseTopic, serviceTopicFilters } from './topics.js';

/**
 * Every message on a device's own topics (attestation response, enrollment, telemetry) marks the
 * device seen; the broker ties those topics to the publisher's certificate, so a device cannot make
 * another one look alive. Noting is a map write; DevicePresence writes them in batches.
 */
export async function trackDevicePresence(client: ServiceMqttClient, services: Services): Promise<void> {
  await client.subscribe(
    [serviceTopicFilters.attestResponse, serviceTopicFilters.enroll, serviceTopicFilters.telemetry],
    ({ topic }) => {
      const parsed = parseTopic(topic);
      const deviceId = parsed ? deviceIdOf(parsed) : undefined;
      if (deviceId !== undefined) services.presence.seen(deviceId);
    },
  );
  // A response on the bare topic names its device only inside; it counts once its signature held
  // (noted by the instance that decided it).
  void (async () => {
    for await (const event of services.pubsub.subscribeOwn('attestation.decided')) {
      if (event.signatureValid === true) services.presence.seen(event.deviceId);
    }
  })();
}
