import type { PolicyBundleDocument, Severity } from './policy-bundle.document.js';

export interface FirmwareSubject {
  model: string | null;
  firmwareHash: string | null;
  goldenFirmwareHash: string | null;
}

export interface FirmwareDrift {
  severity: Severity;
  detail: string;
  /** Stable per situation, so a rescoring that finds the same drift keeps the same trail entry. */
  key: string;
}

/** Per bundle document (immutable once published), so attestation builds each model's set once. */
const approvedByDocument = new WeakMap<PolicyBundleDocument, Map<string, ReadonlySet<string>>>();

/** The approved hashes for a device's model, or null when the bundle does not list the model. */
export function approvedHashes(
  policy: PolicyBundleDocument,
  model: string | null,
): ReadonlySet<string> | null {
  const listed = model === null ? undefined : policy.firmware[model];
  if (!listed || model === null) return null;
  let byModel = approvedByDocument.get(policy);
  if (!byModel) approvedByDocument.set(policy, (byModel = new Map<string, ReadonlySet<string>>()));
  let hashes = byModel.get(model);
  if (!hashes) byModel.set(model, (hashes = new Set(listed.versions.map((entry) => entry.hash))));
  return hashes;
}

/** The version the bundle approves under `hash` for `model`; null when it does not list that image. */
export function approvedVersion(
  policy: PolicyBundleDocument,
  model: string | null,
  hash: string,
): string | null {
  if (model === null) return null;
  return policy.firmware[model]?.versions.find((entry) => entry.hash === hash)?.version ?? null;
}

/**
 * The firmware hashes attestation accepts: the device's own golden value (the inventory's pinned hash
 * when facilities set one, else the hash it enrolled with) plus every hash the current bundle approves
 * for its model, so a device updated to a newer approved image still passes. A device whose own value
 * is not on the list still passes on it; `firmwareDrift` scores that as unvetted firmware.
 * Empty means nothing vouches for the firmware, and attestation fails closed.
 */
export function goldenFirmwareHashes(
  device: FirmwareSubject,
  approved: ReadonlySet<string> | null,
): ReadonlySet<string> {
  const own = device.goldenFirmwareHash ?? device.firmwareHash;
  if (!own) return approved ?? new Set();
  if (!approved || approved.has(own)) return approved ?? new Set([own]);
  return new Set([own, ...approved]);
}

/**
 * How far a device's firmware is from the bundle's latest approved version for its model: unvetted
 * (not on the list) or some versions behind. Null when current, when the bundle does not list the
 * model, or when the device has reported no firmware yet (registered, not enrolled, or enrolled
 * without naming it until its first PASS): nothing to compare with. Attestation itself fails closed
 * on firmware nothing vouches for.
 */
export function firmwareDrift(policy: PolicyBundleDocument, device: FirmwareSubject): FirmwareDrift | null {
  const listed = device.model === null ? undefined : policy.firmware[device.model];
  if (!listed || device.firmwareHash === null) return null;
  const index = listed.versions.findIndex((entry) => entry.hash === device.firmwareHash);
  if (index < 0) {
    return {
      severity: 'HIGH',
      detail: `unvetted firmware: ${device.firmwareHash} is not on the approved list for model ${device.model}`,
      key: `drift:unvetted:${device.firmwareHash}`,
    };
  }
  const latest = listed.versions.findIndex((entry) => entry.version === listed.latest);
  const behind = latest - index;
  if (behind <= 0) return null;
  const version = listed.versions[index]!.version;
  return {
    severity: behind >= policy.risk.driftHighAtVersionsBehind ? 'HIGH' : behind >= 2 ? 'MEDIUM' : 'LOW',
    detail: `firmware ${version} is ${behind} version${behind === 1 ? '' : 's'} behind ${listed.latest}, the latest approved for model ${device.model}`,
    key: `drift:behind:${version}:${listed.latest}`,
  };
}
