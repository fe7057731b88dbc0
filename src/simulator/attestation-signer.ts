import { sign, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../shared/jcs.js';

/** A response before signing: everything the device signs (no `signature`, no `cert_chain`). */
export interface UnsignedResponse {
  type: 'attestation_response';
  challenge_id: string;
  device_id: string;
  nonce: string;
  firmware_hash: string;
  timestamp: string;
  counter?: number;
}

/**
 * Signs as schema/asyncapi.yaml says: RFC 8785 canonical JSON of the unsigned response, ECDSA P-256
 * with SHA-256, DER signature, base64.
 */
export function signAttestationResponse(
  unsigned: UnsignedResponse,
  privateKey: KeyObject,
  certificatePem: string,
): UnsignedResponse & { signature: string; cert_chain: string[] } {
  const signature = sign('sha256', Buffer.from(canonicalJson(unsigned), 'utf8'), {
    key: privateKey,
    dsaEncoding: 'der',
  });
  return { ...unsigned, signature: signature.toString('base64'), cert_chain: [certificatePem] };
}
