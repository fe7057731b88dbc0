import { derExplicit, derInteger, derOid, derSequence, derSet, derTlv } from './der.writer.js';
import { OID } from './oid.constants.js';

/**
 * A certs-only ("degenerate") CMS SignedData (RFC 5652 5.1, RFC 7030 4.1.3 and 4.2.3): no content,
 * no digest algorithms, no signers; only the certificates, in the order given. The DER of each
 * certificate is embedded as is, without re-parsing.
 */
export function certificatesPkcs7(certificates: readonly Uint8Array[]): Buffer {
  const signedData = derSequence(
    derInteger(1),
    derSet(),
    derSequence(derOid(OID.data)),
    derTlv(0xa0, certificates),
    derSet(),
  );
  return derSequence(derOid(OID.signedData), derExplicit(0, signedData));
}
