import { BigIntType, EntitySchema } from '@mikro-orm/core';

export const OUTCOMES = ['PASS', 'FAIL', 'TIMEOUT'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const FAILURE_REASONS = [
  'UNKNOWN_CHALLENGE',
  'NONCE_MISMATCH',
  'STALE_TIMESTAMP',
  'COUNTER_REPLAY',
  'REPLAYED_RESPONSE',
  'WRONG_DEVICE',
  'CERT_NOT_CURRENT',
  'CHAIN_INVALID',
  'CERT_REVOKED',
  'CERT_EXPIRED',
  'SIGNATURE_INVALID',
  'FIRMWARE_MISMATCH',
  'MALFORMED',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

/** The decided outcome of one challenge: the runbook's payload plus each check recorded separately. */
export class AttestationResult {
  /** Monotonic: the SIEM resume cursor. */
  seq!: string;
  challengeId!: string;
  deviceRef!: string;
  deviceId!: string;
  /** The site of the device when the result was decided (its bus event names the same). */
  siteId: string | null = null;
  outcome!: Outcome;
  reasons: FailureReason[] = [];
  nonceMatch: boolean | null = null;
  certChainValid: boolean | null = null;
  signatureValid: boolean | null = null;
  firmwareHash: string | null = null;
  /** The device's own timestamp, as it sent it. */
  timestamp: Date | null = null;
  receivedAt: Date | null = null;
  latencyMs: number | null = null;
  riskScore: number | null = null;
  /** The attestation status the device had after this result. */
  status!: string;
  decidedAt!: Date;
}

export const AttestationResultSchema = new EntitySchema<AttestationResult>({
  class: AttestationResult,
  tableName: 'attestation_result',
  properties: {
    seq: { type: new BigIntType('string'), primary: true, autoincrement: true },
    challengeId: { type: 'uuid' },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    deviceId: { type: 'string', length: 64 },
    siteId: { type: 'string', length: 64, nullable: true },
    outcome: { type: 'string', length: 8 },
    reasons: { type: 'json' },
    nonceMatch: { type: 'boolean', nullable: true },
    certChainValid: { type: 'boolean', nullable: true },
    signatureValid: { type: 'boolean', nullable: true },
    firmwareHash: { type: 'string', length: 71, nullable: true },
    timestamp: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    receivedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    latencyMs: { type: 'integer', nullable: true },
    riskScore: { type: 'integer', nullable: true },
    status: { type: 'string', length: 16 },
    decidedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
  },
});
