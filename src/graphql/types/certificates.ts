import { CERTIFICATE_STATUSES, DeviceCertificate } from '../../certificates/device-certificate.entity.js';
import { REVOCATION_REASONS, type RevocationReason } from '../../enrollment/device-lifecycle.service.js';
import { builder } from '../builder.js';
import { validKey } from '../nodes.js';
import { rowNode } from '../row-node.js';

const REASON_NAMES = Object.keys(REVOCATION_REASONS) as RevocationReason[];

export const RevocationReasonEnum = builder.enumType('RevocationReason', {
  description: 'RFC 5280 5.3.1 CRLReason',
  values: REASON_NAMES,
});

const CertificateStatusEnum = builder.enumType('CertificateStatus', { values: CERTIFICATE_STATUSES });

/** The CRLReason name of a stored code; null for a code no operator can give (none is written today). */
function reasonName(code: number | null): RevocationReason | null {
  return REASON_NAMES.find((name) => REVOCATION_REASONS[name] === code) ?? null;
}

export const CertificateRef = builder.objectRef<DeviceCertificate>('Certificate').implement({
  description: 'An X.509 certificate the internal CA issued to a device',
  fields: (t) => ({
    serial: t.exposeString('serialHex', { description: 'Serial number, hex' }),
    notBefore: t.field({ type: 'DateTime', resolve: (certificate) => certificate.notBefore }),
    notAfter: t.field({ type: 'DateTime', resolve: (certificate) => certificate.notAfter }),
    status: t.field({ type: CertificateStatusEnum, resolve: (certificate) => certificate.status }),
    fingerprint: t.exposeString('fingerprintSha256', { description: 'SHA-256 of the DER, hex' }),
    pem: t.exposeString('pem'),
    issuedAt: t.field({ type: 'DateTime', resolve: (certificate) => certificate.issuedAt }),
    revokedAt: t.field({ type: 'DateTime', nullable: true, resolve: (certificate) => certificate.revokedAt }),
    revocationReason: t.field({
      type: RevocationReasonEnum,
      nullable: true,
      resolve: (certificate) => reasonName(certificate.revocationReason),
    }),
  }),
});

rowNode(CertificateRef, DeviceCertificate, 'id', validKey.uuid);
