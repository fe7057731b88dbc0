import type { TelemetryRule } from '../policy/policy-bundle.document.js';

export interface RuleBreach {
  rule: TelemetryRule;
  value: number;
  detail: string;
}

/** Telemetry payloads are size-limited before parsing: a device cannot make the service parse megabytes. */
export const MAX_TELEMETRY_BYTES = 16 * 1024;

/**
 * The numeric metrics of a telemetry message: `{"metrics": {...}}` or a flat object. Non-numeric
 * values (labels, timestamps) are ignored; null for anything that is not a JSON object.
 */
export function telemetryMetrics(payload: Buffer): Map<string, number> | null {
  if (payload.length > MAX_TELEMETRY_BYTES) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
  const nested = (parsed as Record<string, unknown>).metrics;
  const source =
    typeof nested === 'object' && nested !== null && !Array.isArray(nested)
      ? (nested as Record<string, unknown>)
      : (parsed as Record<string, unknown>);
  const metrics = new Map<string, number>();
  for (const [name, value] of Object.entries(source)) {
    if (typeof value === 'number' && Number.isFinite(value)) metrics.set(name, value);
  }
  return metrics;
}

/** Every rule of the bundle that a metric in the message breaks. */
export function ruleBreaches(
  rules: readonly TelemetryRule[],
  metrics: ReadonlyMap<string, number>,
): RuleBreach[] {
  const breaches: RuleBreach[] = [];
  for (const rule of rules) {
    const value = metrics.get(rule.metric);
    if (value === undefined) continue;
    if (rule.min !== undefined && value < rule.min) {
      breaches.push({ rule, value, detail: `${rule.metric}=${value} below the minimum ${rule.min}` });
    } else if (rule.max !== undefined && value > rule.max) {
      breaches.push({ rule, value, detail: `${rule.metric}=${value} above the maximum ${rule.max}` });
    }
  }
  return breaches;
}
