import { createHash } from 'node:crypto';
import { decodeOctetAlignedBitString, derChildren, readDer } from './der.reader.js';
import {
  derBitString,
  derBoolean,
  derEnumerated,
  derExplicit,
  derImplicitPrimitive,
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  derTlv,
} from './der.writer.js';
import { OID } from './oid.constants.js';

/** X.509 v3 extension encoders (RFC 5280 4.2 and 5.2); each returns one DER `Extension`. */

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // DER omits a BOOLEAN that equals its DEFAULT, so non-critical extensions carry no flag.
  return derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
}

/** RFC 7093 section 2 method 1: the leftmost 160 bits of SHA-256 over the subjectPublicKey bits. */
export function keyIdentifier(spkiDer: Buffer): Buffer {
  const [, subjectPublicKey] = derChildren(readDer(spkiDer, 0x30));
  if (!subjectPublicKey) throw new RangeError('SubjectPublicKeyInfo without a key');
  return createHash('sha256').update(decodeOctetAlignedBitString(subjectPublicKey)).digest().subarray(0, 20);
}

export function basicConstraintsExtension(ca: boolean, pathLength?: number): Buffer {
  const fields = ca ? [derBoolean(true), ...(pathLength === undefined ? [] : [derInteger(pathLength)])] : [];
  return extension(OID.basicConstraints, true, derSequence(...fields));
}

const keyUsageBits = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;
export type KeyUsage = keyof typeof keyUsageBits;

/** A named-bit BIT STRING: DER drops trailing zero bits and counts them as unused (X.690 11.2.2). */
export function keyUsageExtension(usages: readonly KeyUsage[]): Buffer {
  const bits = usages.map((usage) => keyUsageBits[usage]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return extension(OID.keyUsage, true, derBitString(bytes, 7 - (highest % 8)));
}

export function extendedKeyUsageExtension(purposes: readonly string[]): Buffer {
  return extension(OID.extKeyUsage, false, derSequence(...purposes.map(derOid)));
}

export function subjectKeyIdentifierExtension(keyId: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, derOctetString(keyId));
}

export function authorityKeyIdentifierExtension(keyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, derSequence(derImplicitPrimitive(0, keyId)));
}

export type GeneralName =
  { readonly type: 'dns' | 'uri'; readonly value: string } | { readonly type: 'ip'; readonly bytes: Buffer };

function encodeGeneralName(name: GeneralName): Buffer {
  switch (name.type) {
    case 'dns':
      return derImplicitPrimitive(2, Buffer.from(name.value, 'ascii'));
    case 'uri':
      return derImplicitPrimitive(6, Buffer.from(name.value, 'ascii'));
    case 'ip':
      return derImplicitPrimitive(7, name.bytes);
  }
}

/** Non-critical: every subject we issue to also has a non-empty subject DN (RFC 5280 4.2.1.6). */
export function subjectAltNameExtension(names: readonly GeneralName[]): Buffer {
  return extension(OID.subjectAltName, false, derSequence(...names.map(encodeGeneralName)));
}

/** One DistributionPoint whose distributionPoint is fullName = [uri] (RFC 5280 4.2.1.13). */
export function crlDistributionPointsExtension(uri: string): Buffer {
  const fullName = derTlv(0xa0, encodeGeneralName({ type: 'uri', value: uri }));
  return extension(OID.crlDistributionPoints, false, derSequence(derSequence(derExplicit(0, fullName))));
}

export function crlNumberExtension(crlNumber: bigint): Buffer {
  return extension(OID.crlNumber, false, derInteger(crlNumber));
}

export function crlReasonExtension(reasonCode: number): Buffer {
  return extension(OID.crlReason, false, derEnumerated(reasonCode));
}
