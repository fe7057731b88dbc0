import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { derBitString, derNull, derOid, derSequence, derUnsignedInteger } from './der.writer.js';
import { sha256Hex } from './encoding.helpers.js';

const ecPublicKey = '1.2.840.10045.2.1';
const curves: Record<string, { oid: string; size: number }> = {
  'P-256': { oid: '1.2.840.10045.3.1.7', size: 32 },
  'P-384': { oid: '1.3.132.0.34', size: 48 },
};

const fromBase64Url = (value: string | undefined): Buffer => Buffer.from(value ?? '', 'base64url');

function leftPad(bytes: Buffer, size: number): Buffer {
  return bytes.length >= size ? bytes : Buffer.concat([Buffer.alloc(size - bytes.length), bytes]);
}

/** SPKI DER (RFC 5480, RFC 8410, RFC 3279) written from the key's JWK parameters. */
function spkiFromJwk(jwk: JsonWebKey): Buffer | undefined {
  const curve = curves[jwk.crv ?? ''];
  if (jwk.kty === 'EC' && curve) {
    const point = Buffer.concat([
      Buffer.from([4]),
      leftPad(fromBase64Url(jwk.x), curve.size),
      leftPad(fromBase64Url(jwk.y), curve.size),
    ]);
    return derSequence(derSequence(derOid(ecPublicKey), derOid(curve.oid)), derBitString(point));
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    return derSequence(derSequence(derOid('1.3.101.112')), derBitString(fromBase64Url(jwk.x)));
  }
  if (jwk.kty === 'RSA') {
    const rsaPublicKey = derSequence(
      derUnsignedInteger(fromBase64Url(jwk.n)),
      derUnsignedInteger(fromBase64Url(jwk.e)),
    );
    return derSequence(derSequence(derOid('1.2.840.113549.1.1.1'), derNull()), derBitString(rsaPublicKey));
  }
  return undefined;
}

/**
 * The SubjectPublicKeyInfo of `key` in one canonical encoding (named curve, uncompressed point). The
 * same EC key can be sent with a compressed point; canonical bytes make spkiSha256 name the key, not
 * its encoding, so a "key already enrolled" check cannot be dodged by re-encoding a cloned key.
 * Written from the JWK export, which is several times cheaper than OpenSSL 3's DER encoder.
 */
export function canonicalSpki(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const supported = ['ec', 'ed25519', 'rsa'].includes(publicKey.asymmetricKeyType ?? '');
  return (
    (supported ? spkiFromJwk(publicKey.export({ format: 'jwk' })) : undefined) ??
    publicKey.export({ type: 'spki', format: 'der' })
  );
}

/** SHA-256 (hex) of the canonical SPKI of a key, a certificate's key, or SPKI DER bytes. */
export function spkiSha256Hex(publicKeyOrCertificate: KeyObject | X509Certificate | Uint8Array): string {
  const key =
    publicKeyOrCertificate instanceof X509Certificate
      ? publicKeyOrCertificate.publicKey
      : publicKeyOrCertificate instanceof Uint8Array
        ? createPublicKey({ key: Buffer.from(publicKeyOrCertificate), format: 'der', type: 'spki' })
        : publicKeyOrCertificate;
  return sha256Hex(canonicalSpki(key));
}
