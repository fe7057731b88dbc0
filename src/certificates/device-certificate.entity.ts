import { EntitySchema } from '@mikro-orm/core';

export const CERTIFICATE_STATUSES = ['ACTIVE', 'SUPERSEDED', 'REVOKED'] as const;
export type CertificateStatus = (typeof CERTIFICATE_STATUSES)[number];

/** A certificate the internal CA issued to a device. */
export class DeviceCertificate {
  id!: string;
  /** The device row's id (not its device_id string). */
  deviceRef!: string;
  serialHex!: string;
  fingerprintSha256!: string;
  spkiSha256!: string;
  pem!: string;
  notBefore!: Date;
  notAfter!: Date;
  status: CertificateStatus = 'ACTIVE';
  issuedAt!: Date;
  revokedAt: Date | null = null;
  /** RFC 5280 5.3.1 CRLReason code. */
  revocationReason: number | null = null;
  enrollmentTokenId: string | null = null;
}

export const DeviceCertificateSchema = new EntitySchema<DeviceCertificate>({
  class: DeviceCertificate,
  tableName: 'device_certificate',
  properties: {
    id: { type: 'uuid', primary: true },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    serialHex: { type: 'string', length: 40, unique: true },
    fingerprintSha256: { type: 'string', length: 64, unique: true },
    spkiSha256: { type: 'string', length: 64 },
    pem: { type: 'text' },
    notBefore: { type: 'datetime', columnType: 'timestamptz(3)' },
    notAfter: { type: 'datetime', columnType: 'timestamptz(3)' },
    status: { type: 'string', length: 16 },
    issuedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    revokedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    revocationReason: { type: 'integer', nullable: true },
    enrollmentTokenId: { type: 'uuid', nullable: true },
  },
});
