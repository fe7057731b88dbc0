import { generateKeyPair as generateKeyPairCallback, X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import {
  CLOCK_SKEW_MS,
  randomSerial,
  signCertificate,
  signCrl,
  wholeSeconds,
  type RevokedEntry,
} from './certificate.builder.js';
import { readCertificateParts } from './certificate.reader.js';
import { createChainVerifier, type ChainVerification } from './chain.verifier.js';
import { requireVerifiedCsr, type ParsedCsr } from './csr.codec.js';
import { derToPem, sha256Hex } from './encoding.helpers.js';
import { createLeafProfiles, type ProfileOutput } from './issuance.profiles.js';
import { certificatesPkcs7 } from './pkcs7.codec.js';
import { PkiError } from './pki.errors.js';
import { canonicalSpki } from './public-key.helpers.js';
import type { Signer } from './signer.port.js';
import {
  authorityKeyIdentifierExtension,
  crlNumberExtension,
  keyIdentifier,
} from './x509-extensions.encoder.js';

const generateKeyPair = promisify(generateKeyPairCallback);

const DAY_MS = 86_400_000;

export interface ServerCertificateRequest {
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly validityDays?: number;
}

/** A fresh key with its certificate, for the service's own TLS endpoints. */
export interface IssuedCredential {
  readonly certificatePem: string;
  /** Unencrypted PKCS#8 PEM: held in memory by the process, never written by the PKI. */
  readonly privateKeyPem: string;
  /** Issuing CA then root, to send or trust alongside the certificate. */
  readonly chainPem: string;
}

export interface DeviceCertificateRequest {
  /** A decoded CSR; it is verified here if verifyCsr has not already passed it. */
  readonly csr: ParsedCsr;
  readonly deviceId: string;
  /** 'sha256:<64 lowercase hex>', certified as the SAN URI urn:dice:cdi:sha256:<hex>. */
  readonly cdiCommitment: string;
  readonly validityDays?: number;
  readonly now?: Date;
}

export interface IssuedDeviceCertificate {
  readonly pem: string;
  readonly der: Buffer;
  /** 32 lowercase hex digits, the DER INTEGER content. */
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprintSha256: string;
  readonly spkiSha256: string;
}

export interface RevokedCertificate {
  readonly serialHex: string;
  readonly revokedAt: Date;
  /** CRLReason (RFC 5280 5.3.1); 0 (unspecified) is encoded by omitting the extension. */
  readonly reasonCode: number;
}

export interface CrlRequest {
  readonly revoked: readonly RevokedCertificate[];
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly crlNumber: bigint | number;
}

/**
 * The internal certificate authority: a root (offline after bootstrap) and an issuing CA that signs
 * device, service and server certificates and the CRL, always through its Signer.
 */
export interface CertificateAuthority {
  readonly rootCertificate: X509Certificate;
  readonly issuingCertificate: X509Certificate;
  readonly rootPem: string;
  readonly issuingPem: string;
  /** Issuing CA then root. */
  readonly chainPem: string;
  readonly rootFingerprintSha256: string;
  issueServerCertificate(request: ServerCertificateRequest): Promise<IssuedCredential>;
  issueServiceClientCertificate(instanceName: string): Promise<IssuedCredential>;
  issueDeviceCertificate(request: DeviceCertificateRequest): Promise<IssuedDeviceCertificate>;
  /** DER CRL signed by the issuing CA, with AKI and CRL number. Serve DER: OpenSSL wants `X509 CRL` PEM. */
  createCrl(request: CrlRequest): Promise<Buffer>;
  /** RFC 7030 4.1.3 /cacerts body before base64: issuing CA and root in a certs-only PKCS#7. */
  cacertsPkcs7(): Buffer;
  verifyChain(leaf: Uint8Array | string, at?: Date): ChainVerification;
}

export interface CertificateAuthorityParts {
  readonly rootDer: Buffer;
  readonly issuingDer: Buffer;
  readonly issuingSigner: Signer;
  readonly crlUrl: string;
  readonly now: () => Date;
}

const validCrlReasons = new Set([0, 1, 2, 3, 4, 5, 6, 9, 10]);

function checkValidityDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 3650) {
    throw new PkiError('INVALID_INPUT', 'validityDays must be an integer from 1 to 3650');
  }
  return days;
}

function serialFromHex(serialHex: string): Buffer {
  if (!/^[0-9a-fA-F]{1,40}$/.test(serialHex)) throw new PkiError('INVALID_INPUT', `bad serial ${serialHex}`);
  return Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, 'hex');
}

export function createCertificateAuthority(parts: CertificateAuthorityParts): CertificateAuthority {
  const { issuingSigner: signer, now } = parts;
  const rootCertificate = new X509Certificate(parts.rootDer);
  const issuingCertificate = new X509Certificate(parts.issuingDer);
  const issuing = readCertificateParts(parts.issuingDer);
  // A signer whose key is not the issuing certificate's would produce certificates nothing validates.
  if (!canonicalSpki(signer.publicKey).equals(canonicalSpki(issuingCertificate.publicKey))) {
    throw new PkiError('CA_STORE_CORRUPT', 'the issuing key does not match the issuing CA certificate');
  }
  const verifier = createChainVerifier(issuingCertificate, rootCertificate);
  const issuerName = issuing.subject.bytes;
  const issuingNotAfter = Date.parse(issuingCertificate.validTo);
  const profiles = createLeafProfiles(issuing.spki.bytes, parts.crlUrl);
  const crlAuthorityKeyId = authorityKeyIdentifierExtension(keyIdentifier(issuing.spki.bytes));
  const rootPem = derToPem(parts.rootDer, 'CERTIFICATE');
  const issuingPem = derToPem(parts.issuingDer, 'CERTIFICATE');
  const chainPem = issuingPem + rootPem;
  const cacerts = certificatesPkcs7([parts.issuingDer, parts.rootDer]);

  async function issue(spki: Buffer, profile: ProfileOutput, at: Date, validityDays: number) {
    const notBefore = wholeSeconds(new Date(at.getTime() - CLOCK_SKEW_MS));
    // A leaf outliving its issuer would fail validation in its last days anyway: clip it.
    const notAfter = wholeSeconds(new Date(Math.min(at.getTime() + validityDays * DAY_MS, issuingNotAfter)));
    const serial = randomSerial();
    const der = await signCertificate(
      {
        serial,
        issuer: issuerName,
        subject: profile.subject,
        notBefore,
        notAfter,
        spki,
        extensions: profile.extensions,
      },
      signer,
    );
    return { der, serial, notBefore, notAfter };
  }

  async function issueWithNewKey(profile: (spki: Buffer) => ProfileOutput, validityDays: number) {
    const { privateKey, publicKey } = await generateKeyPair('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const { der } = await issue(spki, profile(spki), now(), validityDays);
    return {
      certificatePem: derToPem(der, 'CERTIFICATE'),
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      chainPem,
    };
  }

  return {
    rootCertificate,
    issuingCertificate,
    rootPem,
    issuingPem,
    chainPem,
    rootFingerprintSha256: sha256Hex(parts.rootDer),

    issueServerCertificate: ({ commonName, dnsNames, ipAddresses, validityDays = 90 }) =>
      issueWithNewKey(
        (spki) => profiles.server(spki, commonName, dnsNames, ipAddresses),
        checkValidityDays(validityDays),
      ),

    issueServiceClientCertificate: (instanceName) =>
      issueWithNewKey((spki) => profiles.serviceClient(spki, instanceName), 90),

    async issueDeviceCertificate({ csr, deviceId, cdiCommitment, validityDays = 30, now: at = now() }) {
      const profile = profiles.device(csr.spki, deviceId, cdiCommitment);
      requireVerifiedCsr(csr);
      const { der, serial, notBefore, notAfter } = await issue(
        csr.spki,
        profile,
        at,
        checkValidityDays(validityDays),
      );
      return {
        pem: derToPem(der, 'CERTIFICATE'),
        der,
        serialHex: serial.toString('hex'),
        notBefore,
        notAfter,
        fingerprintSha256: sha256Hex(der),
        spkiSha256: csr.spkiSha256,
      };
    },

    async createCrl({ revoked, thisUpdate, nextUpdate, crlNumber }) {
      if (nextUpdate.getTime() <= thisUpdate.getTime()) {
        throw new PkiError('INVALID_INPUT', 'nextUpdate must be after thisUpdate');
      }
      const number = BigInt(crlNumber);
      // RFC 5280 5.2.3: a non-negative integer of at most 20 octets.
      if (number < 0n || number >= 1n << 159n) throw new PkiError('INVALID_INPUT', 'crlNumber out of range');
      const seen = new Set<string>();
      const entries: RevokedEntry[] = revoked.map(({ serialHex, revokedAt, reasonCode }) => {
        // 7 is unassigned and removeFromCRL (8) belongs to delta CRLs only (RFC 5280 5.3.1).
        if (!validCrlReasons.has(reasonCode)) {
          throw new PkiError('INVALID_INPUT', `bad CRL reason ${reasonCode}`);
        }
        const serial = serialFromHex(serialHex);
        const key = BigInt(`0x${serial.toString('hex')}`).toString(16);
        if (seen.has(key)) throw new PkiError('INVALID_INPUT', `serial ${serialHex} listed twice`);
        seen.add(key);
        return { serial, revokedAt, reasonCode };
      });
      return signCrl(
        {
          issuer: issuerName,
          thisUpdate,
          nextUpdate,
          entries,
          extensions: [crlAuthorityKeyId, crlNumberExtension(number)],
        },
        signer,
      );
    },

    cacertsPkcs7: () => Buffer.from(cacerts),

    verifyChain: (leaf, at = now()) => verifier(leaf, at),
  };
}
