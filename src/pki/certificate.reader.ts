import type { X509Certificate } from 'node:crypto';
import { derChildren, expectTag, readDer, type Tlv } from './der.reader.js';
import { pemToDer } from './encoding.helpers.js';
import { readCommonNames } from './name.codec.js';

export interface CertificateParts {
  /** The subject Name; its bytes are reused verbatim as the issuer of what this certificate signs. */
  readonly subject: Tlv;
  readonly spki: Tlv;
}

/** The TBSCertificate fields the PKI reads back from certificates (RFC 5280 4.1). */
export function readCertificateParts(der: Buffer): CertificateParts {
  const [tbs] = derChildren(readDer(der, 0x30));
  const fields = derChildren(expectTag(tbs, 0x30));
  const first = fields[0]?.tag === 0xa0 ? 1 : 0;
  return { subject: expectTag(fields[first + 4], 0x30), spki: expectTag(fields[first + 5], 0x30) };
}

/**
 * The subject CN of a certificate, or undefined unless there is exactly one. Read from the DER, not
 * from a printed subject string, so a CN containing separators cannot pose as a second attribute;
 * two CNs are refused because callers that identify a peer by CN must not have to pick one.
 */
export function certificateCommonName(
  certificate: X509Certificate | Uint8Array | string,
): string | undefined {
  const der =
    typeof certificate === 'string'
      ? pemToDer(certificate, 'CERTIFICATE')
      : certificate instanceof Uint8Array
        ? Buffer.from(certificate)
        : certificate.raw;
  const names = readCommonNames(readCertificateParts(der).subject);
  return names.length === 1 ? names[0] : undefined;
}
