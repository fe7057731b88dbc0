import type { RiskBand } from '../devices/device.entity.js';
import type { PolicyBundleDocument, RiskFactorKind, Severity } from '../policy/policy-bundle.document.js';

/** What the formula needs of a factor; rows and in-memory candidates both fit. */
export interface ScoredFactor {
  kind: RiskFactorKind;
  severity: Severity;
  observedAt: Date;
  /** State factors (firmware drift) hold their full weight while they last; reported ones fade. */
  decays: boolean;
}

export const MAX_SCORE = 100;

/** The runbook's bands, boundaries exactly at 30/31 and 70/71. */
export function bandOf(score: number): RiskBand {
  if (score <= 30) return 'NORMAL';
  if (score <= 70) return 'ELEVATED';
  return 'CRITICAL';
}

/** Points at full strength: the severity's points times the kind's weight. */
export function baseContribution(
  factor: Pick<ScoredFactor, 'kind' | 'severity'>,
  policy: PolicyBundleDocument,
) {
  return policy.risk.severityPoints[factor.severity] * policy.risk.weights[factor.kind];
}

/**
 * Contribution now: halves every `halfLifeHours` after the observation for decaying factors. A factor
 * observed in the future (a clock ahead of ours) counts at full strength, never more.
 */
export function contributionAt(factor: ScoredFactor, policy: PolicyBundleDocument, now: Date): number {
  const base = baseContribution(factor, policy);
  if (!factor.decays) return base;
  const ageHours = Math.max(0, now.getTime() - factor.observedAt.getTime()) / 3_600_000;
  return base * 0.5 ** (ageHours / policy.risk.halfLifeHours);
}

/**
 * The bundle's formula: the sum of current contributions, rounded and clamped to 0-100. Every
 * contribution is non-negative and non-increasing in time, so a new factor never lowers the score and
 * decay never raises it (the property tests hold the code to that).
 */
export function scoreOf(factors: readonly ScoredFactor[], policy: PolicyBundleDocument, now: Date): number {
  const sum = factors.reduce((total, factor) => total + contributionAt(factor, policy, now), 0);
  return Math.min(MAX_SCORE, Math.max(0, Math.round(sum)));
}
