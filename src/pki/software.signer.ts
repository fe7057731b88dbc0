import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import { PkiError } from './pki.errors.js';
import type { SignatureAlgorithmName, Signer } from './signer.port.js';

const algorithmByCurve: Record<string, { algorithm: SignatureAlgorithmName; hash: string }> = {
  prime256v1: { algorithm: 'ecdsa-with-SHA256', hash: 'sha256' },
  secp384r1: { algorithm: 'ecdsa-with-SHA384', hash: 'sha384' },
};

/**
 * A Signer over an in-process private key. Signing is synchronous node:crypto (tens of
 * microseconds for P-256), cheaper than a WebCrypto round trip through the thread pool.
 */
export function createSoftwareSigner(privateKey: KeyObject): Signer {
  const curve = privateKey.asymmetricKeyDetails?.namedCurve;
  const choice = curve === undefined ? undefined : algorithmByCurve[curve];
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ec' || !choice) {
    throw new PkiError('CA_STORE_CORRUPT', 'CA keys must be ECDSA P-256 or P-384 private keys');
  }
  return {
    publicKey: createPublicKey(privateKey),
    algorithm: choice.algorithm,
    sign: (data) => Promise.resolve(sign(choice.hash, data, privateKey)),
  };
}
