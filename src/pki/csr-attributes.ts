import { derOid, derSequence, derSet } from './der.writer.js';
import { OID } from './oid.constants.js';

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const SECP256R1 = '1.2.840.10045.3.1.7';

/**
 * RFC 7030 4.5.2 CsrAttrs: what devices should put in their CSR. challengePassword asks for the TLS
 * channel binding (RFC 7030 3.5, RFC 9266); an ecPublicKey attribute naming P-256 and
 * ecdsa-with-SHA256 name the preferred key and signature. Constant, so built once.
 */
export const CSR_ATTRIBUTES_DER: Buffer = derSequence(
  derOid(OID.challengePassword),
  derSequence(derOid(EC_PUBLIC_KEY), derSet(derOid(SECP256R1))),
  derOid(OID.ecdsaWithSha256),
);
