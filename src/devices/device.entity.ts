import { BigIntType, EntitySchema } from '@mikro-orm/core';

export const DEVICE_TYPES = ['PLC', 'RTU', 'HMI', 'IP_CAM', 'GATEWAY', 'SENSOR', 'OTHER'] as const;
export type DeviceType = (typeof DEVICE_TYPES)[number];

export const CRITICALITIES = ['critical', 'standard'] as const;
export type Criticality = (typeof CRITICALITIES)[number];

/** What the fleet view shows: the outcome of identity and attestation checks. */
export const ATTESTATION_STATUSES = ['PENDING', 'VERIFIED', 'FAILED', 'REVOKED'] as const;
export type AttestationStatus = (typeof ATTESTATION_STATUSES)[number];

/**
 * Where the device is in its identity lifecycle. Legal moves (enrollment.rules.ts):
 * REGISTERED -> ENROLLED (EST) -> APPROVED | REJECTED; any enrolled state -> REVOKED;
 * REVOKED | REJECTED -> REGISTERED only through re-registration by facilities.
 */
export const ENROLLMENT_STATES = ['REGISTERED', 'ENROLLED', 'APPROVED', 'REJECTED', 'REVOKED'] as const;
export type EnrollmentState = (typeof ENROLLMENT_STATES)[number];

/** The runbook's bands: 0-30 green, 31-70 yellow, 71-100 red. */
export const RISK_BANDS = ['NORMAL', 'ELEVATED', 'CRITICAL'] as const;
export type RiskBand = (typeof RISK_BANDS)[number];

export class Device {
  id!: string;
  deviceId!: string;
  type!: DeviceType;
  model: string | null = null;
  siteId: string | null = null;
  criticality: Criticality = 'standard';
  /** From the inventory: the commitment the device must present (`sha256:` + hex of SHA-256(CDI)). */
  expectedCdiCommitment: string | null = null;
  /** From the chip vendor's list: SHA-256 (hex) of the only public key this device may enroll. */
  expectedSpkiSha256: string | null = null;
  goldenFirmwareHash: string | null = null;
  /** As enrolled: what the device presented. */
  cdiCommitment: string | null = null;
  firmwareVersion: string | null = null;
  firmwareHash: string | null = null;
  attestationStatus: AttestationStatus = 'PENDING';
  enrollmentState: EnrollmentState = 'REGISTERED';
  enrollmentGroupId: string | null = null;
  /** When the scheduler should challenge next; set at approval, owned by attestation afterwards. */
  nextChallengeAt: Date | null = null;
  /** Timeouts in a row since the last PASS or FAIL. */
  consecutiveFailures = 0;
  /** Highest attestation counter accepted (replay protection that does not lean on clocks alone). */
  lastCounter: string | null = null;
  lastAttestationAt: Date | null = null;
  /** Why the device is FAILED: a failed check (sticky until acknowledged) or UNRESPONSIVE (heals on PASS). */
  failureKind: 'CHECK_FAILED' | 'UNRESPONSIVE' | null = null;
  /** 0-100, recomputed by the risk domain; the band is stored beside it so fleet pages filter on an index. */
  riskScore = 0;
  riskBand: RiskBand = 'NORMAL';
  riskScoredAt: Date | null = null;
  /** The policy bundle version that produced the current score. */
  policyBundleVersion: number | null = null;
  /** Isolated devices may only answer attestation challenges; the broker refuses their other messages. */
  isolated = false;
  /** Last MQTT message from the device (any topic): the basis of online/offline. */
  lastSeenAt: Date | null = null;
  registeredAt!: Date;
  updatedAt!: Date;
  /** Optimistic lock: concurrent decisions on one device (approve vs revoke) cannot both commit. */
  version = 1;
}

export const DeviceSchema = new EntitySchema<Device>({
  class: Device,
  tableName: 'device',
  properties: {
    id: { type: 'uuid', primary: true },
    deviceId: { type: 'string', length: 64, unique: true },
    type: { type: 'string', length: 16 },
    model: { type: 'string', length: 200, nullable: true },
    siteId: { type: 'string', length: 64, nullable: true },
    criticality: { type: 'string', length: 16 },
    expectedCdiCommitment: { type: 'string', length: 71, nullable: true },
    expectedSpkiSha256: { type: 'string', length: 64, nullable: true },
    goldenFirmwareHash: { type: 'string', length: 71, nullable: true },
    cdiCommitment: { type: 'string', length: 71, nullable: true },
    firmwareVersion: { type: 'string', length: 100, nullable: true },
    firmwareHash: { type: 'string', length: 71, nullable: true },
    attestationStatus: { type: 'string', length: 16 },
    enrollmentState: { type: 'string', length: 16 },
    enrollmentGroupId: { type: 'uuid', nullable: true },
    nextChallengeAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    consecutiveFailures: { type: 'integer' },
    // A string, as declared above and like every bigint column here (JSON.stringify refuses a JS bigint).
    lastCounter: { type: new BigIntType('string'), columnType: 'bigint', nullable: true },
    lastAttestationAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    failureKind: { type: 'string', length: 16, nullable: true },
    riskScore: { type: 'smallint' },
    riskBand: { type: 'string', length: 16 },
    riskScoredAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    policyBundleVersion: { type: 'integer', nullable: true },
    isolated: { type: 'boolean' },
    lastSeenAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    registeredAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    updatedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    version: { type: 'integer', version: true },
  },
});
