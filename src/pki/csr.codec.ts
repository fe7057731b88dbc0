import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { DirectoryString, Extensions, type Attribute } from '@peculiar/asn1-x509';
import { pemToDer, sha256Hex } from './encoding.helpers.js';
import { OID } from './oid.constants.js';
import { PkiError } from './pki.errors.js';
import { canonicalSpki } from './public-key.helpers.js';

export type CsrKey =
  | { readonly kind: 'ec-p256' | 'ec-p384' | 'ed25519'; readonly keyObject: KeyObject }
  | { readonly kind: 'rsa'; readonly modulusBits: number; readonly keyObject: KeyObject }
  | { readonly kind: 'other'; readonly description: string };

export interface RequestedExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Buffer;
}

/** A decoded PKCS#10 request (RFC 2986). Decoding checks structure only; verifyCsr decides. */
export interface ParsedCsr {
  readonly der: Buffer;
  readonly commonName: string | undefined;
  /** Canonical SPKI DER of the key (see canonicalSpki); the request's own bytes for unsupported keys. */
  readonly spki: Buffer;
  readonly spkiSha256: string;
  readonly key: CsrKey;
  readonly signatureAlgorithm: { readonly oid: string; readonly name: string };
  /** PKCS#9 challengePassword, the carrier of RFC 7030 3.5 / RFC 9266 tls-exporter channel binding. */
  readonly challengePassword: string | undefined;
  /** What the requester asked for; informational only, the issuance profile never copies it. */
  readonly requestedExtensions: readonly RequestedExtension[];
  readonly certificationRequestInfo: Buffer;
  readonly signature: Buffer;
}

type SignatureAlgorithm =
  | { readonly name: string; readonly weak: true }
  | {
      readonly name: string;
      readonly weak: false;
      readonly family: 'ecdsa' | 'rsa' | 'ed25519';
      readonly hash: string | null;
    };

const signatureAlgorithms: Record<string, SignatureAlgorithm> = {
  '1.2.840.10045.4.3.2': { name: 'ecdsa-with-SHA256', weak: false, family: 'ecdsa', hash: 'sha256' },
  '1.2.840.10045.4.3.3': { name: 'ecdsa-with-SHA384', weak: false, family: 'ecdsa', hash: 'sha384' },
  '1.2.840.10045.4.3.4': { name: 'ecdsa-with-SHA512', weak: false, family: 'ecdsa', hash: 'sha512' },
  '1.2.840.113549.1.1.11': { name: 'sha256WithRSAEncryption', weak: false, family: 'rsa', hash: 'sha256' },
  '1.2.840.113549.1.1.12': { name: 'sha384WithRSAEncryption', weak: false, family: 'rsa', hash: 'sha384' },
  '1.2.840.113549.1.1.13': { name: 'sha512WithRSAEncryption', weak: false, family: 'rsa', hash: 'sha512' },
  '1.3.101.112': { name: 'Ed25519', weak: false, family: 'ed25519', hash: null },
  '1.2.840.10045.4.1': { name: 'ecdsa-with-SHA1', weak: true },
  '1.2.840.113549.1.1.5': { name: 'sha1WithRSAEncryption', weak: true },
  '1.3.14.3.2.29': { name: 'sha1WithRSASignature', weak: true },
  '1.2.840.113549.1.1.4': { name: 'md5WithRSAEncryption', weak: true },
  '1.2.840.113549.1.1.2': { name: 'md2WithRSAEncryption', weak: true },
};

const keyFamily = { 'ec-p256': 'ecdsa', 'ec-p384': 'ecdsa', ed25519: 'ed25519', rsa: 'rsa' } as const;
const minimumRsaBits = 2048;

function toDer(body: Buffer | string): Buffer {
  if (typeof body !== 'string' && body[0] === 0x30) return body;
  const text = typeof body === 'string' ? body : body.toString('latin1');
  if (text.includes('-----BEGIN')) return pemToDer(text, 'CERTIFICATE REQUEST');
  // RFC 7030 4.2.1: base64 DER, with line breaks allowed anywhere.
  const base64 = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
    throw new PkiError('DER_MALFORMED', 'neither DER, PEM nor base64');
  }
  return Buffer.from(base64, 'base64');
}

function classifyKey(spki: Buffer): { key: CsrKey; spki: Buffer } {
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    return { key: { kind: 'other', description: 'unreadable public key' }, spki };
  }
  const type = keyObject.asymmetricKeyType;
  const details = keyObject.asymmetricKeyDetails;
  const supported = (key: CsrKey) => ({ key, spki: canonicalSpki(keyObject) });
  if (type === 'ec' && details?.namedCurve === 'prime256v1') return supported({ kind: 'ec-p256', keyObject });
  if (type === 'ec' && details?.namedCurve === 'secp384r1') return supported({ kind: 'ec-p384', keyObject });
  if (type === 'ed25519') return supported({ kind: 'ed25519', keyObject });
  if (type === 'rsa' && details?.modulusLength !== undefined) {
    return supported({ kind: 'rsa', modulusBits: details.modulusLength, keyObject });
  }
  // Explicit-parameter EC keys land here (no namedCurve): accepting them invites CurveBall-style
  // substitution of the curve (CVE-2020-0601).
  return {
    key: { kind: 'other', description: `${type ?? 'unknown'} ${details?.namedCurve ?? ''}`.trim() },
    spki,
  };
}

function readAttributes(
  attributes: readonly Attribute[] | undefined,
): Pick<ParsedCsr, 'challengePassword' | 'requestedExtensions'> {
  let challengePassword: string | undefined;
  const requestedExtensions: RequestedExtension[] = [];
  for (const attribute of attributes ?? []) {
    if (attribute.type === OID.challengePassword) {
      const [value, ...extra] = attribute.values;
      // Two passwords would let a channel-binding check look at one while something else reads the other.
      if (challengePassword !== undefined || !value || extra.length > 0) {
        throw new PkiError('DER_MALFORMED', 'challengePassword must carry exactly one value');
      }
      challengePassword = AsnConvert.parse(value, DirectoryString).toString();
    } else if (attribute.type === OID.extensionRequest) {
      for (const value of attribute.values) {
        for (const extension of AsnConvert.parse(value, Extensions)) {
          requestedExtensions.push({
            oid: extension.extnID,
            critical: extension.critical,
            value: Buffer.from(extension.extnValue.buffer),
          });
        }
      }
    }
  }
  return { challengePassword, requestedExtensions };
}

/**
 * Decodes a CSR sent as base64 DER (RFC 7030 4.2.1, line breaks allowed), raw DER, or PEM
 * (`CERTIFICATE REQUEST`, as devices following the runbook send), with the maintained PKCS#10 schema
 * of @peculiar/asn1-csr. Throws PkiError CSR_UNDECODABLE for anything that is not a well-formed
 * request and CSR_AMBIGUOUS_SUBJECT for two CNs.
 */
export function decodeCsr(body: Buffer | string): ParsedCsr {
  try {
    const der = toDer(body);
    const request = AsnConvert.parse(der, CertificationRequest);
    // The exact bytes that were signed: verification must see what the requester signed, not a re-encoding.
    const info = request.certificationRequestInfoRaw;
    if (!info) throw new PkiError('DER_MALFORMED', 'no CertificationRequestInfo');
    // A parser that stops early would let trailing bytes ride along unsigned.
    if (AsnConvert.serialize(request).byteLength !== der.length) {
      throw new PkiError('DER_MALFORMED', 'trailing or non-canonical bytes');
    }
    const { version, subject, subjectPKInfo, attributes } = request.certificationRequestInfo;
    if (version !== 0) throw new PkiError('DER_MALFORMED', 'not a version 1 CertificationRequestInfo');
    const commonNames = subject.flatMap((rdn) => rdn.filter((pair) => pair.type === OID.commonName));
    // Two CNs: an authorisation check on one could pass while a log or an ACL reads the other.
    if (commonNames.length > 1) {
      throw new PkiError('CSR_AMBIGUOUS_SUBJECT', 'the subject carries more than one CN');
    }
    const oid = request.signatureAlgorithm.algorithm;
    const { key, spki } = classifyKey(Buffer.from(AsnConvert.serialize(subjectPKInfo)));
    const parsed: ParsedCsr = {
      der,
      commonName: commonNames[0]?.value.toString(),
      spki,
      spkiSha256: sha256Hex(spki),
      key: Object.freeze(key),
      signatureAlgorithm: { oid, name: signatureAlgorithms[oid]?.name ?? oid },
      ...readAttributes(attributes),
      certificationRequestInfo: Buffer.from(info),
      signature: Buffer.from(request.signature),
    };
    // Frozen because verification is remembered per object (see verifyCsr).
    return Object.freeze(parsed);
  } catch (error) {
    if (error instanceof PkiError && error.code !== 'DER_MALFORMED') throw error;
    throw new PkiError('CSR_UNDECODABLE', `undecodable CSR: ${(error as Error).message}`, { cause: error });
  }
}

const verifiedCsrs = new WeakSet<ParsedCsr>();

/**
 * Proof of possession (RFC 2986 3, RFC 7030 3.4): the request must be signed by the key it asks to
 * have certified, or anyone could get a certificate for a public key they merely copied. Also refuses
 * keys and hashes too weak to anchor a device identity. Throws a PkiError with a CSR_* code.
 */
export function verifyCsr(csr: ParsedCsr): void {
  const algorithm = signatureAlgorithms[csr.signatureAlgorithm.oid];
  if (!algorithm) {
    throw new PkiError(
      'CSR_UNSUPPORTED_SIGNATURE_ALGORITHM',
      `signature algorithm ${csr.signatureAlgorithm.oid}`,
    );
  }
  // SHA-1/MD5 collisions let a requester get a signature that also covers a different request.
  if (algorithm.weak) throw new PkiError('CSR_WEAK_SIGNATURE_ALGORITHM', `${algorithm.name} is not accepted`);
  const { key } = csr;
  if (key.kind === 'other') {
    throw new PkiError('CSR_UNSUPPORTED_KEY', `${key.description} keys are not accepted`);
  }
  if (key.kind === 'rsa' && key.modulusBits < minimumRsaBits) {
    throw new PkiError('CSR_WEAK_KEY', `RSA-${key.modulusBits} is below ${minimumRsaBits} bits`);
  }
  // An RSA key under an ECDSA OID would still be checked as RSA by node: refuse the mismatch outright.
  if (keyFamily[key.kind] !== algorithm.family) {
    throw new PkiError('CSR_BAD_SIGNATURE', `${algorithm.name} does not fit a ${key.kind} key`);
  }
  let valid = false;
  try {
    valid = verify(algorithm.hash, csr.certificationRequestInfo, key.keyObject, csr.signature);
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new PkiError('CSR_BAD_SIGNATURE', 'the CSR signature does not verify with its public key');
  }
  verifiedCsrs.add(csr);
}

/** verifyCsr, skipped when this very (frozen) object already passed it. */
export function requireVerifiedCsr(csr: ParsedCsr): void {
  if (!verifiedCsrs.has(csr)) verifyCsr(csr);
}
