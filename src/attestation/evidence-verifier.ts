import type { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import type { Device } from '../devices/device.entity.js';
import type { FailureReason } from './attestation-result.entity.js';
import type { AttestationChallenge } from './challenge.entity.js';

/**
 * What a verifier knows besides the evidence: the challenge, the device, its current certificate and
 * the firmware its type's current policy bundle approves.
 */
export interface EvidenceContext {
  challenge: Pick<AttestationChallenge, 'id' | 'deviceId' | 'nonce' | 'issuedAt' | 'deadlineAt'>;
  device: Pick<Device, 'deviceId' | 'model' | 'goldenFirmwareHash' | 'firmwareHash' | 'lastCounter'>;
  currentCertificate: Pick<DeviceCertificate, 'fingerprintSha256' | 'status'> | null;
  /** Hashes the current bundle approves for the device's model; null when no bundle lists the model. */
  approvedFirmwareHashes: ReadonlySet<string> | null;
  allowedClockSkewS: number;
  receivedAt: Date;
}

/** Each check recorded on its own, as the result row and the API show them. */
export interface EvidenceVerdict {
  reasons: FailureReason[];
  nonceMatch: boolean;
  certChainValid: boolean;
  signatureValid: boolean;
  firmwareHash: string | null;
  timestamp: Date | null;
  /** The counter the device sent, accepted only if the verdict passes. */
  counter: bigint | null;
}

/**
 * One kind of attestation evidence (a DICE-key signature today, a TPM 2.0 quote next). The service
 * picks the verifier whose `accepts` says yes; everything around it (challenges, results, status,
 * cases) is the same for every kind. Implementations are pure: no I/O, no clock of their own.
 */
export interface EvidenceVerifier {
  readonly kind: string;
  accepts(response: Record<string, unknown>): boolean;
  verify(response: Record<string, unknown>, context: EvidenceContext): EvidenceVerdict;
}
