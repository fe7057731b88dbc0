import { CERTIFICATE_STATUSES, DeviceCertificate } from '../../certificates/device-certificate.entity.js';
import { REVOCATION_REASONS, type RevocationReason } from '../../enrollment/device-lifecycle.service.js';
import {
  countCertificates,
  listCertificates,
  type CertificateKey,
  type CertificateListFilter,
} from '../../certificates/certificate-list.js';
import { Device } from '../../devices/device.entity.js';
import { builder } from '../builder.js';
import { PAGE_SIZE, decodeCursor, encodeCursor, keysetConnection } from '../cursor.js';
import { GraphQLError } from 'graphql';
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

const CURSOR_KIND = 'certificate';

const CertificateFilterInput = builder.inputType('CertificateFilter', {
  fields: (t) => ({
    deviceId: t.string(),
    status: t.field({ type: [CertificateStatusEnum] }),
    expiringBefore: t.field({ type: 'DateTime', description: 'Only certificates valid until before this' }),
  }),
});

builder.queryField('certificates', (t) =>
  t.connection({
    type: CertificateRef,
    authScopes: { viewer: true },
    description: `Certificates the CA issued, newest first; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
    args: { filter: t.arg({ type: CertificateFilterInput }) },
    resolve: async (_root, args, context) => {
      const filter: CertificateListFilter = {
        statuses: args.filter?.status ?? undefined,
        expiringBefore: args.filter?.expiringBefore ?? undefined,
      };
      if (typeof args.filter?.deviceId === 'string') {
        const device = await context.em.findOne(
          Device,
          { deviceId: args.filter.deviceId },
          { fields: ['id'] },
        );
        filter.deviceRefs = device ? [device.id] : [];
      }
      const connection = await keysetConnection(
        args,
        (certificate: DeviceCertificate) =>
          encodeCursor(CURSOR_KIND, `${certificate.issuedAt.toISOString()}|${certificate.id}`),
        ({ after, before, limit, inverted }) =>
          listCertificates(context.em, filter, {
            after: after === undefined ? undefined : decodeKey(after),
            before: before === undefined ? undefined : decodeKey(before),
            limit,
            reversed: inverted,
          }),
      );
      return { ...connection, totalCount: () => countCertificates(context.em, filter) };
    },
  }),
);

function decodeKey(cursor: string): CertificateKey {
  const [issuedAt, id] = decodeCursor(CURSOR_KIND, cursor).split('|');
  const instant = new Date(issuedAt ?? '');
  if (Number.isNaN(instant.getTime()) || id === undefined || !validKey.uuid(id)) {
    throw new GraphQLError(`Invalid cursor for ${CURSOR_KIND}`, { extensions: { code: 'INVALID_CURSOR' } });
  }
  return { issuedAt: instant, id };
}
