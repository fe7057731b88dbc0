import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { auditHash } from '../../../src/audit/audit-chain.js';
import { canonicalJson } from '../../../src/shared/jcs.js';

const contentArb = fc.record({
  seq: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String),
  occurredAt: fc.date({ min: new Date('2000-01-01Z'), max: new Date('2100-01-01Z'), noInvalidDate: true }),
  actor: fc.string({ unit: 'grapheme' }),
  action: fc.string(),
  subject: fc.string({ unit: 'binary' }),
  details: fc.dictionary(fc.string(), fc.jsonValue()),
});

describe('auditHash', () => {
  it('hashes exactly the RFC 8785 canonical JSON of the row and its predecessor hash', () => {
    fc.assert(
      fc.property(contentArb, fc.stringMatching(/^[0-9a-f]{64}$/), (content, prevHash) => {
        const canonical = canonicalJson({
          ...content,
          occurredAt: content.occurredAt.toISOString(),
          prevHash,
        });
        expect(auditHash(content, prevHash)).toBe(createHash('sha256').update(canonical).digest('hex'));
      }),
    );
  });
});
