/**
 * Device and site ids. They become the certificate CN (X.509 ub-common-name: at most 64), an MQTT
 * topic level and the MQTT client id, so: ASCII letters, digits and `. _ : -` only (no `/`, `+`,
 * `#` that would change a topic's meaning or an ACL pattern), starting with a letter or digit.
 */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

/** `sha256:` and 64 lowercase hex digits: how commitments and firmware hashes are written. */
export const SHA256_REF_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** 64 lowercase hex digits: a bare SHA-256 (for example of a SubjectPublicKeyInfo). */
export const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
