import { X509Certificate } from 'node:crypto';
import { pemToDer } from './encoding.helpers.js';
import { PkiError } from './pki.errors.js';

export type ChainFailure =
  'undecodable' | 'not-a-leaf' | 'unknown-issuer' | 'bad-signature' | 'not-yet-valid' | 'expired';

export type ChainVerification =
  | {
      readonly ok: true;
      readonly certificate: X509Certificate;
      /** The window (epoch ms) in which the whole chain is valid: callers may cache the result for it. */
      readonly validFrom: number;
      readonly validTo: number;
    }
  | { readonly ok: false; readonly reason: ChainFailure };

export type ChainVerifier = (leaf: Uint8Array | string, at: Date) => ChainVerification;

function validity(certificate: X509Certificate): { from: number; to: number } {
  return { from: Date.parse(certificate.validFrom), to: Date.parse(certificate.validTo) };
}

/**
 * Checks leaf -> issuing CA -> root. The CA pair is checked once here and kept parsed with its key:
 * parsing is the expensive part of a chain check, so per call only the leaf is parsed and verified.
 */
export function createChainVerifier(issuing: X509Certificate, root: X509Certificate): ChainVerifier {
  if (!issuing.checkIssued(root) || !issuing.verify(root.publicKey)) {
    throw new PkiError('CA_STORE_CORRUPT', 'the issuing CA certificate is not signed by the root CA');
  }
  const issuingKey = issuing.publicKey;
  const issuingValidity = validity(issuing);
  const rootValidity = validity(root);
  const chainFrom = Math.max(issuingValidity.from, rootValidity.from);
  const chainTo = Math.min(issuingValidity.to, rootValidity.to);

  return (leaf, at) => {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(typeof leaf === 'string' ? pemToDer(leaf, 'CERTIFICATE') : leaf);
    } catch {
      return { ok: false, reason: 'undecodable' };
    }
    // A CA certificate presented as an identity would carry the CA's name, not a device's.
    if (certificate.ca) return { ok: false, reason: 'not-a-leaf' };
    if (!certificate.checkIssued(issuing)) return { ok: false, reason: 'unknown-issuer' };
    if (!certificate.verify(issuingKey)) return { ok: false, reason: 'bad-signature' };
    const { from, to } = validity(certificate);
    const validFrom = Math.max(from, chainFrom);
    const validTo = Math.min(to, chainTo);
    const time = at.getTime();
    if (time < validFrom) return { ok: false, reason: 'not-yet-valid' };
    if (time > validTo) return { ok: false, reason: 'expired' };
    return { ok: true, certificate, validFrom, validTo };
  };
}
