import { EntitySchema } from '@mikro-orm/core';

/** The runbook's `cps_attestation` block, in its own field names. */
export interface AttestationSettingsValues {
  nonce_size: number;
  challenge_interval_critical_s: number;
  challenge_interval_standard_s: number;
  allowed_clock_skew_s: number;
  attestation_timeout_s: number;
  failure_threshold: number;
}

export const DEFAULT_ATTESTATION_SETTINGS: AttestationSettingsValues = {
  nonce_size: 32,
  challenge_interval_critical_s: 300,
  challenge_interval_standard_s: 1800,
  allowed_clock_skew_s: 2,
  attestation_timeout_s: 10,
  failure_threshold: 3,
};

/** One version of the runtime settings; rows are never updated, the highest version is in force. */
export class AttestationSettingsVersion {
  version!: number;
  values!: AttestationSettingsValues;
  changedBy!: string;
  reason: string | null = null;
  createdAt!: Date;
}

export const AttestationSettingsVersionSchema = new EntitySchema<AttestationSettingsVersion>({
  class: AttestationSettingsVersion,
  tableName: 'attestation_settings',
  properties: {
    version: { type: 'integer', primary: true, autoincrement: false },
    values: { type: 'json' },
    changedBy: { type: 'string', length: 200 },
    reason: { type: 'string', length: 500, nullable: true },
    createdAt: { type: 'datetime', columnType: 'timestamptz(3)' },
  },
});
