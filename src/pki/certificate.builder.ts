import { randomBytes } from 'node:crypto';
import {
  derBitString,
  derExplicit,
  derInteger,
  derOid,
  derSequence,
  derTime,
  derUnsignedInteger,
} from './der.writer.js';
import { OID } from './oid.constants.js';
import type { SignatureAlgorithmName, Signer } from './signer.port.js';
import { crlReasonExtension } from './x509-extensions.encoder.js';

/** RFC 5758 3.2: the ECDSA AlgorithmIdentifiers carry no parameters. */
const algorithmIdentifiers: Record<SignatureAlgorithmName, Buffer> = {
  'ecdsa-with-SHA256': derSequence(derOid(OID.ecdsaWithSha256)),
  'ecdsa-with-SHA384': derSequence(derOid(OID.ecdsaWithSha384)),
};

/**
 * 16 random bytes with the top bit cleared, so the DER INTEGER is positive and at most 16 bytes
 * (RFC 5280 4.1.2.2 allows 20); a zero first byte is redrawn so every serial is 32 hex digits.
 * Unpredictable serials stop chosen-prefix collision attacks on the signature hash.
 */
export function randomSerial(): Buffer {
  for (;;) {
    const serial = randomBytes(16);
    serial[0] = (serial[0] ?? 0) & 0x7f;
    if (serial[0] !== 0) return serial;
  }
}

/** Certificates start a minute in the past so devices whose clocks lag slightly accept them at once. */
export const CLOCK_SKEW_MS = 60_000;

/** X.509 times carry whole seconds; what we report must match what we signed. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

export interface CertificateFields {
  readonly serial: Buffer;
  /** DER Name; for issued certificates the issuer certificate's subject bytes, unchanged. */
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly extensions: readonly Buffer[];
}

/** An X.509 v3 certificate (RFC 5280 4.1) whose TBS is signed through the Signer. */
export async function signCertificate(fields: CertificateFields, signer: Signer): Promise<Buffer> {
  const algorithm = algorithmIdentifiers[signer.algorithm];
  const tbs = derSequence(
    derExplicit(0, derInteger(2)),
    derUnsignedInteger(fields.serial),
    algorithm,
    fields.issuer,
    derSequence(derTime(fields.notBefore), derTime(fields.notAfter)),
    fields.subject,
    fields.spki,
    derExplicit(3, derSequence(...fields.extensions)),
  );
  return derSequence(tbs, algorithm, derBitString(await signer.sign(tbs)));
}

export interface RevokedEntry {
  readonly serial: Buffer;
  readonly revokedAt: Date;
  readonly reasonCode: number;
}

export interface CrlFields {
  readonly issuer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly entries: readonly RevokedEntry[];
  readonly extensions: readonly Buffer[];
}

/** An X.509 v2 CRL (RFC 5280 5.1) signed through the Signer. */
export async function signCrl(fields: CrlFields, signer: Signer): Promise<Buffer> {
  const algorithm = algorithmIdentifiers[signer.algorithm];
  const entries = fields.entries.map((entry) =>
    derSequence(
      derUnsignedInteger(entry.serial),
      derTime(entry.revokedAt),
      // RFC 5280 5.3.1: reasonCode "unspecified" SHOULD be expressed by leaving the extension out.
      ...(entry.reasonCode === 0 ? [] : [derSequence(crlReasonExtension(entry.reasonCode))]),
    ),
  );
  const tbs = derSequence(
    derInteger(1),
    algorithm,
    fields.issuer,
    derTime(fields.thisUpdate),
    derTime(fields.nextUpdate),
    // RFC 5280 5.1.2.6: with no revoked certificates the list is absent, not empty.
    ...(entries.length === 0 ? [] : [derSequence(...entries)]),
    derExplicit(0, derSequence(...fields.extensions)),
  );
  return derSequence(tbs, algorithm, derBitString(await signer.sign(tbs)));
}
