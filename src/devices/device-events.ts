import type { DeviceChangedEvent } from '../shared/events.js';
import type { Device } from './device.entity.js';

/** The `device.changed` payload for a device as it is now, after a change made by `actor`. */
export function deviceChanged(
  device: Pick<
    Device,
    'deviceId' | 'attestationStatus' | 'enrollmentState' | 'siteId' | 'riskScore' | 'riskBand'
  >,
  change: {
    change: string;
    previousStatus: string | null;
    previousRiskBand?: string | null;
    actor: string;
    reason: string | null;
    at: Date;
  },
): DeviceChangedEvent {
  return {
    deviceId: device.deviceId,
    change: change.change,
    attestationStatus: device.attestationStatus,
    enrollmentState: device.enrollmentState,
    previousAttestationStatus: change.previousStatus,
    riskScore: device.riskScore,
    riskBand: device.riskBand,
    previousRiskBand: change.previousRiskBand ?? null,
    siteId: device.siteId,
    occurredAt: change.at.toISOString(),
    actor: change.actor,
    reason: change.reason,
  };
}
