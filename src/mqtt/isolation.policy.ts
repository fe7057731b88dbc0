import type { IsolatedDeviceSet } from '../devices/isolated-device-set.js';
import type { Services } from '../services.js';
import type { EmbeddedBrokerOptions } from './embedded-broker.js';
import { parseTopic, type TopicKind } from './topics.js';

/** What an isolated device may still publish: its attestation answers, so it stays under watch. */
const OPEN_WHILE_ISOLATED: ReadonlySet<TopicKind> = new Set(['attestResponse', 'attestResponseBare']);

/**
 * The embedded broker's isolation rule: a suspect device cannot feed data or requests into the fleet,
 * yet keeps proving what it runs. Answered from memory on every publish.
 */
export function isolationAcl(isolated: IsolatedDeviceSet): NonNullable<EmbeddedBrokerOptions['canPublish']> {
  return (identity, topic) => {
    if (identity.kind === 'service' || !isolated.has(identity.deviceId)) return Promise.resolve(true);
    const parsed = parseTopic(topic);
    return Promise.resolve(parsed !== null && OPEN_WHILE_ISOLATED.has(parsed.kind));
  };
}

/**
 * The service's half of isolation, for an external broker whose ACL is not ours (README, "Isolation"):
 * a message an isolated device may not send is dropped, counted and logged. True when it was dropped.
 */
export function droppedForIsolation(
  services: Services,
  kind: Exclude<TopicKind, 'attestResponse' | 'attestResponseBare'>,
  deviceId: string,
): boolean {
  if (!services.isolatedDevices.has(deviceId)) return false;
  services.metrics.mqttMessages.inc({ kind, result: 'isolated' });
  services.logger.warn({ component: 'mqtt', deviceId, kind }, 'message of an isolated device dropped');
  return true;
}
