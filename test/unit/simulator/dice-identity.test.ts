import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { assignBehaviours } from '../../../src/simulator/behaviours.js';
import { deriveDiceIdentity } from '../../../src/simulator/dice-identity.js';

describe('DICE identity', () => {
  it('derives CDI = HMAC-SHA256(UDS, SHA-256(firmware)) and commits to SHA-256(CDI)', () => {
    const uds = Buffer.alloc(32, 7);
    const firmware = Buffer.from('layer-0 firmware image');
    const identity = deriveDiceIdentity(uds, firmware);
    const measurement = createHash('sha256').update(firmware).digest();
    const cdi = createHmac('sha256', uds).update(measurement).digest();
    expect(identity.cdi.equals(cdi)).toBe(true);
    expect(identity.commitment).toBe(`sha256:${createHash('sha256').update(cdi).digest('hex')}`);
    expect(identity.firmwareHash).toBe(`sha256:${measurement.toString('hex')}`);
    // Changing one bit of the firmware changes the CDI: the identity is bound to the code.
    const patched = Buffer.from(firmware);
    patched[0] = patched[0]! ^ 1;
    expect(deriveDiceIdentity(uds, patched).commitment).not.toBe(identity.commitment);
  });
});

describe('behaviour mix', () => {
  it('assigns behaviours in proportion and refuses bad specs', () => {
    const assigned = assignBehaviours('honest:80,silent:10,tampered-firmware:10', 10);
    expect(assigned.filter((b) => b === 'honest')).toHaveLength(8);
    expect(assigned.filter((b) => b === 'silent')).toHaveLength(1);
    expect(assigned).toHaveLength(10);
    expect(assignBehaviours('wrong-key', 3)).toEqual(['wrong-key', 'wrong-key', 'wrong-key']);
    expect(() => assignBehaviours('honest:50', 2)).toThrow(/add up to 100/);
    expect(() => assignBehaviours('sneaky', 2)).toThrow(/unknown behaviour/);
  });
});
