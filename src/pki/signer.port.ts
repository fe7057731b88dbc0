import type { KeyObject } from 'node:crypto';

export type SignatureAlgorithmName = 'ecdsa-with-SHA256' | 'ecdsa-with-SHA384';

/**
 * The only way the CA reaches a private key: every certificate and CRL it produces is signed by one
 * `sign` call on the exact TBS bytes, so a software key, an HSM (PKCS#11) or a cloud KMS can stand
 * behind it without the CA changing.
 *
 * Contract:
 * - `sign(data)` signs `data` with the algorithm named by `algorithm` (hashing included) and resolves
 *   to the value that goes into the signatureValue BIT STRING: for ECDSA the DER Ecdsa-Sig-Value
 *   (RFC 3279 2.2.3), which is what KMS APIs return; PKCS#11 r||s must be converted by the adapter.
 * - `publicKey` verifies those signatures; the CA puts it into the CA certificate and derives the
 *   key identifier of its AKI/SKI extensions from it.
 * - Calls may overlap (many enrollments in flight); implementations must be safe for that.
 */
export interface Signer {
  readonly publicKey: KeyObject;
  readonly algorithm: SignatureAlgorithmName;
  sign(data: Uint8Array): Promise<Buffer>;
}
