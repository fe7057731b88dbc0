import { X509Certificate, verify as verifySignature, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { CertificateAuthority, ChainVerification } from '../pki/index.js';
import { goldenFirmwareHashes } from '../policy/firmware-policy.js';
import { canonicalJson } from '../shared/jcs.js';
import type { FailureReason } from './attestation-result.entity.js';
import type { EvidenceContext, EvidenceVerdict, EvidenceVerifier } from './evidence-verifier.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** The device-signed response (schema/asyncapi.yaml). */
export const diceResponseSchema = z.object({
  type: z.literal('attestation_response'),
  challenge_id: z.string().uuid(),
  device_id: z.string().min(1).max(64),
  nonce: z.string().regex(/^[0-9a-f]{32,512}$/),
  firmware_hash: z.string().max(200),
  cert_chain: z.array(z.string().max(8_192)).min(1).max(4),
  signature: z.string().max(1_024),
  timestamp: z.string().regex(RFC3339),
  counter: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
});
export type DiceResponse = z.infer<typeof diceResponseSchema>;

/** Parsed leaf certificates by PEM: parsing is the expensive part of verification, keys repeat. */
const LEAF_CACHE_LIMIT = 100_000;

interface Leaf {
  certificate: X509Certificate;
  key: KeyObject;
  fingerprint: string;
  /** The chain check as last done for these bytes (see `chainOf`). */
  chain?: ChainVerification;
}

/**
 * Verifies a response signed with the device's enrolled (DICE-derived) key: signature over the RFC
 * 8785 canonical JSON of the response without `signature` and `cert_chain`, ECDSA DER (SHA-256 on
 * P-256, SHA-384 on P-384) or raw Ed25519.
 */
export class DiceEvidenceVerifier implements EvidenceVerifier {
  readonly kind = 'dice-signature';
  readonly #leaves = new Map<string, Leaf>();

  constructor(private readonly ca: CertificateAuthority) {}

  accepts(response: Record<string, unknown>): boolean {
    return response.type === 'attestation_response' && typeof response.signature === 'string';
  }

  verify(raw: Record<string, unknown>, context: EvidenceContext): EvidenceVerdict {
    const response = diceResponseSchema.parse(raw);
    const reasons: FailureReason[] = [];
    const { challenge, device, currentCertificate } = context;

    const nonceMatch = response.nonce === challenge.nonce;
    if (!nonceMatch) reasons.push('NONCE_MISMATCH');
    if (response.device_id !== device.deviceId) reasons.push('WRONG_DEVICE');

    const timestamp = new Date(response.timestamp);
    const skewMs = context.allowedClockSkewS * 1000;
    // The device cannot have signed before the challenge existed, nor after we received the answer.
    if (
      Number.isNaN(timestamp.getTime()) ||
      timestamp.getTime() < challenge.issuedAt.getTime() - skewMs ||
      timestamp.getTime() > context.receivedAt.getTime() + skewMs
    ) {
      reasons.push('STALE_TIMESTAMP');
    }

    const counter = response.counter === undefined ? null : BigInt(response.counter);
    if (counter !== null && device.lastCounter !== null && counter <= BigInt(device.lastCounter)) {
      reasons.push('COUNTER_REPLAY');
    }

    const leaf = this.leaf(response.cert_chain[0]!);
    let certChainValid = false;
    let signatureValid = false;
    if (!leaf) {
      reasons.push('CHAIN_INVALID', 'SIGNATURE_INVALID');
    } else {
      const commonName = /(?:^|\n)CN=([^\n]+)/.exec(leaf.certificate.subject)?.[1];
      if (commonName !== device.deviceId && !reasons.includes('WRONG_DEVICE')) reasons.push('WRONG_DEVICE');
      const chain = this.chainOf(leaf, context.receivedAt);
      certChainValid = chain.ok;
      if (!chain.ok) reasons.push(chain.reason === 'expired' ? 'CERT_EXPIRED' : 'CHAIN_INVALID');
      // Only the device's live identity counts: an old or revoked key proves nothing about it now.
      if (!currentCertificate || currentCertificate.fingerprintSha256 !== leaf.fingerprint) {
        reasons.push('CERT_NOT_CURRENT');
      } else if (currentCertificate.status === 'REVOKED') {
        reasons.push('CERT_REVOKED');
      }
      signatureValid = this.signatureValid(response, leaf.key);
      if (!signatureValid) reasons.push('SIGNATURE_INVALID');
    }

    // Own golden value or approved by the bundle; no known-good value at all fails closed.
    if (!goldenFirmwareHashes(device, context.approvedFirmwareHashes).has(response.firmware_hash)) {
      reasons.push('FIRMWARE_MISMATCH');
    }

    return {
      reasons,
      nonceMatch,
      certChainValid,
      signatureValid,
      firmwareHash: response.firmware_hash,
      timestamp,
      counter,
    };
  }

  /** Whether `raw` carries a valid signature by this certificate's key (attribution on shared topics). */
  signedBy(raw: Record<string, unknown>, certificatePem: string): boolean {
    const parsed = diceResponseSchema.safeParse(raw);
    const leaf = this.leaf(certificatePem);
    return parsed.success && leaf !== undefined && this.signatureValid(parsed.data, leaf.key);
  }

  private signatureValid(response: DiceResponse, key: KeyObject): boolean {
    const { signature, cert_chain: _chain, ...signed } = response; // both are outside what the device signs
    const data = Buffer.from(canonicalJson(signed), 'utf8');
    const hash =
      key.asymmetricKeyType === 'ed25519'
        ? null
        : key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
          ? 'sha384'
          : 'sha256';
    try {
      return verifySignature(hash, data, { key, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
    } catch {
      return false;
    }
  }

  /**
   * The chain check, done once per certificate: a verified chain stays verified inside its validity
   * window (outside it, checked again for the precise reason), and a chain that does not verify for
   * any other reason never will, since the bytes and the CA are fixed.
   */
  private chainOf(leaf: Leaf, at: Date): ChainVerification {
    const known = leaf.chain;
    const time = at.getTime();
    if (known && (!known.ok || (time >= known.validFrom && time <= known.validTo))) return known;
    const checked = this.ca.verifyChain(leaf.certificate.raw, at);
    if (checked.ok || (checked.reason !== 'expired' && checked.reason !== 'not-yet-valid')) {
      leaf.chain = checked;
    }
    return checked;
  }

  private leaf(pem: string): Leaf | undefined {
    const cached = this.#leaves.get(pem);
    if (cached) return cached;
    try {
      const certificate = new X509Certificate(pem);
      const entry: Leaf = {
        certificate,
        key: certificate.publicKey,
        fingerprint: certificate.fingerprint256.replaceAll(':', '').toLowerCase(),
      };
      if (this.#leaves.size >= LEAF_CACHE_LIMIT) this.#leaves.delete(this.#leaves.keys().next().value!);
      this.#leaves.set(pem, entry);
      return entry;
    } catch {
      return undefined;
    }
  }
}
