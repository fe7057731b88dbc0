import { EntitySchema } from '@mikro-orm/core';

export const TOKEN_STATES = ['OUTSTANDING', 'CONSUMED', 'REPLACED'] as const;
export type TokenState = (typeof TOKEN_STATES)[number];

/** A single-use enrollment one-time token (OTT). Only the SHA-256 of the secret is stored. */
export class EnrollmentToken {
  id!: string;
  deviceRef!: string;
  tokenHash!: string;
  /** The commitment the token is bound to; null for an operator-issued token on a device with none. */
  cdiCommitment: string | null = null;
  firmwareVersion: string | null = null;
  firmwareHash: string | null = null;
  state: TokenState = 'OUTSTANDING';
  issuedAt!: Date;
  expiresAt!: Date;
  issuedBy!: string;
  consumedAt: Date | null = null;
  /** After consumption: the certificate issued and the key it certified (for idempotent retries). */
  certificateId: string | null = null;
  csrSpkiSha256: string | null = null;
}

export const EnrollmentTokenSchema = new EntitySchema<EnrollmentToken>({
  class: EnrollmentToken,
  tableName: 'enrollment_token',
  properties: {
    id: { type: 'uuid', primary: true },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    tokenHash: { type: 'string', length: 64, unique: true },
    cdiCommitment: { type: 'string', length: 71, nullable: true },
    firmwareVersion: { type: 'string', length: 100, nullable: true },
    firmwareHash: { type: 'string', length: 71, nullable: true },
    state: { type: 'string', length: 16 },
    issuedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    expiresAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    issuedBy: { type: 'string', length: 200 },
    consumedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    certificateId: { type: 'uuid', nullable: true },
    csrSpkiSha256: { type: 'string', length: 64, nullable: true },
  },
});
