import type { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import type { Device } from '../devices/device.entity.js';

/** The runbook's JSON shape of a device (snake_case, as the REST shim's clients expect). */
export function deviceJson(device: Device, current: DeviceCertificate | null) {
  return {
    device_id: device.deviceId,
    device_type: device.type,
    model: device.model,
    site: device.siteId,
    criticality: device.criticality,
    attestation_status: device.attestationStatus,
    enrollment_state: device.enrollmentState,
    cdi_commitment: device.cdiCommitment,
    expected_cdi_commitment: device.expectedCdiCommitment,
    expected_spki_sha256: device.expectedSpkiSha256,
    golden_firmware_hash: device.goldenFirmwareHash,
    firmware_version: device.firmwareVersion,
    registered_at: device.registeredAt.toISOString(),
    updated_at: device.updatedAt.toISOString(),
    current_certificate: current
      ? {
          serial: current.serialHex,
          not_before: current.notBefore.toISOString(),
          not_after: current.notAfter.toISOString(),
          status: current.status,
          fingerprint: current.fingerprintSha256,
        }
      : null,
  };
}
