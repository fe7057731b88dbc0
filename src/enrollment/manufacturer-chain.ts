import { X509Certificate } from 'node:crypto';

/** Longest chain walked: IDevID hierarchies are root, one or two intermediates, leaf. */
const MAX_DEPTH = 6;

export function fingerprintOf(certificate: X509Certificate): string {
  return certificate.fingerprint256.replaceAll(':', '').toLowerCase();
}

/**
 * Builds and verifies the path from a presented manufacturer (IEEE 802.1AR IDevID) leaf to one of the
 * trust anchors, using only the certificates the device presented plus the anchors. Each link is
 * checked for issuer name, signature, CA flag and validity at `now`; the walk stops at the first
 * anchor it reaches. Returns the path leaf first, or undefined when no trusted path exists.
 */
export function verifyManufacturerChain(
  presented: readonly Buffer[],
  anchors: readonly X509Certificate[],
  now: Date,
): X509Certificate[] | undefined {
  if (presented.length === 0) return undefined;
  let parsed: X509Certificate[];
  try {
    parsed = presented.map((der) => new X509Certificate(der));
  } catch {
    return undefined;
  }
  const [leaf, ...intermediates] = parsed as [X509Certificate, ...X509Certificate[]];
  const anchorPrints = new Set(anchors.map(fingerprintOf));
  // A CA certificate is not a device identity, and an anchor itself proves nothing about possession.
  if (leaf.ca || anchorPrints.has(fingerprintOf(leaf)) || !validAt(leaf, now)) return undefined;
  const pool = [...anchors, ...intermediates];
  const path: X509Certificate[] = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth += 1) {
    const issuer = pool.find(
      (candidate) =>
        candidate.ca &&
        validAt(candidate, now) &&
        current.checkIssued(candidate) &&
        current.verify(candidate.publicKey) &&
        !path.some((seen) => fingerprintOf(seen) === fingerprintOf(candidate)),
    );
    if (!issuer) return undefined;
    path.push(issuer);
    if (anchorPrints.has(fingerprintOf(issuer))) return path;
    current = issuer;
  }
  return undefined;
}

function validAt(certificate: X509Certificate, now: Date): boolean {
  return new Date(certificate.validFrom) <= now && now <= new Date(certificate.validTo);
}
