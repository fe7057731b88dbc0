import { createHash, createHmac, randomBytes } from 'node:crypto';

/**
 * A virtual device's DICE layer 0: a Unique Device Secret burnt in at manufacture, and the firmware it
 * measures. CDI = HMAC-SHA256(UDS, SHA-256(firmware)); the device reveals only a commitment to it.
 */
export interface DiceIdentity {
  uds: Buffer;
  firmware: Buffer;
  /** `sha256:` + hex of SHA-256(firmware): what attestation compares with the golden value. */
  firmwareHash: string;
  cdi: Buffer;
  /** `sha256:` + hex of SHA-256(CDI). */
  commitment: string;
}

export function deriveDiceIdentity(uds: Buffer, firmware: Buffer): DiceIdentity {
  const measurement = createHash('sha256').update(firmware).digest();
  const cdi = createHmac('sha256', uds).update(measurement).digest();
  return {
    uds,
    firmware,
    firmwareHash: `sha256:${measurement.toString('hex')}`,
    cdi,
    commitment: `sha256:${createHash('sha256').update(cdi).digest('hex')}`,
  };
}

/** A new device: random UDS and a random firmware image. */
export function newDiceIdentity(): DiceIdentity {
  return deriveDiceIdentity(randomBytes(32), randomBytes(4096));
}
