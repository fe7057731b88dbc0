import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, RISK_FACTOR_KINDS, SEVERITIES } from '../../../src/policy/policy-bundle.document.js';
import { bandOf, scoreOf, type ScoredFactor } from '../../../src/risk/risk-score.js';

const NOW = new Date('2026-11-29T12:00:00Z');
const YEAR_MS = 365 * 24 * 3_600_000;

const factorArb: fc.Arbitrary<ScoredFactor> = fc.record({
  kind: fc.constantFrom(...RISK_FACTOR_KINDS),
  severity: fc.constantFrom(...SEVERITIES),
  observedAt: fc.integer({ min: -YEAR_MS, max: 60_000 }).map((offset) => new Date(NOW.getTime() + offset)),
  decays: fc.boolean(),
});

const policyArb = fc
  .record({
    weights: fc.record({
      FIRMWARE_DRIFT: fc.double({ min: 0, max: 10, noNaN: true }),
      TELEMETRY_ANOMALY: fc.double({ min: 0, max: 10, noNaN: true }),
      IOC_HIT: fc.double({ min: 0, max: 10, noNaN: true }),
      ATTESTATION: fc.double({ min: 0, max: 10, noNaN: true }),
    }),
    halfLifeHours: fc.double({ min: 0.01, max: 24 * 365, noNaN: true }),
  })
  .map(({ weights, halfLifeHours }) => ({
    ...DEFAULT_POLICY,
    risk: { ...DEFAULT_POLICY.risk, weights, halfLifeHours },
  }));

describe('risk score properties', () => {
  it('always lies in 0-100 and is an integer', () => {
    fc.assert(
      fc.property(fc.array(factorArb, { maxLength: 60 }), policyArb, (factors, policy) => {
        const score = scoreOf(factors, policy, NOW);
        expect(Number.isInteger(score)).toBe(true);
        expect(score).toBeGreaterThanOrEqual(0);
        expect(score).toBeLessThanOrEqual(100);
      }),
    );
  });

  it('never drops when a factor is added', () => {
    fc.assert(
      fc.property(fc.array(factorArb, { maxLength: 40 }), factorArb, policyArb, (factors, added, policy) => {
        expect(scoreOf([...factors, added], policy, NOW)).toBeGreaterThanOrEqual(
          scoreOf(factors, policy, NOW),
        );
      }),
    );
  });

  it('never rises as time passes (decay)', () => {
    fc.assert(
      fc.property(
        fc.array(factorArb, { maxLength: 40 }),
        policyArb,
        fc.integer({ min: 0, max: YEAR_MS }),
        (factors, policy, later) => {
          const after = new Date(NOW.getTime() + later);
          expect(scoreOf(factors, policy, after)).toBeLessThanOrEqual(scoreOf(factors, policy, NOW));
        },
      ),
    );
  });

  it('puts the band boundaries exactly at 30/31 and 70/71', () => {
    expect([0, 30, 31, 70, 71, 100].map(bandOf)).toEqual([
      'NORMAL',
      'NORMAL',
      'ELEVATED',
      'ELEVATED',
      'CRITICAL',
      'CRITICAL',
    ]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), (score) => {
        const band = bandOf(score);
        expect(band).toBe(score <= 30 ? 'NORMAL' : score <= 70 ? 'ELEVATED' : 'CRITICAL');
      }),
    );
  });

  it('halves a decaying factor after one half-life', () => {
    const factor: ScoredFactor = { kind: 'IOC_HIT', severity: 'HIGH', observedAt: NOW, decays: true };
    const policy = { ...DEFAULT_POLICY, risk: { ...DEFAULT_POLICY.risk, halfLifeHours: 10 } };
    const full = scoreOf([factor], policy, NOW);
    expect(full).toBe(Math.round(35 * 1.5));
    expect(scoreOf([factor], policy, new Date(NOW.getTime() + 10 * 3_600_000))).toBe(
      Math.round((35 * 1.5) / 2),
    );
  });
});
