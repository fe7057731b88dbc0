export const BEHAVIOURS = [
  'honest',
  'tampered-firmware',
  'replay',
  'silent',
  'slow',
  'clock-skew',
  'wrong-key',
  'counter-rollback',
] as const;
export type Behaviour = (typeof BEHAVIOURS)[number];

/**
 * `honest` or a mix such as `honest:80,silent:10,tampered-firmware:10` (percentages summing to 100).
 * Returns the behaviour of each of `count` devices, in proportion and in a stable order.
 */
export function assignBehaviours(spec: string, count: number): Behaviour[] {
  const parts = spec
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
  const mix = parts.map((part) => {
    const [name, share] = part.split(':');
    if (!BEHAVIOURS.includes(name as Behaviour))
      throw new Error(`unknown behaviour ${name} (one of ${BEHAVIOURS.join(', ')})`);
    const percent = share === undefined ? 100 / parts.length : Number(share);
    if (!Number.isFinite(percent) || percent < 0) throw new Error(`bad share in ${part}`);
    return { behaviour: name as Behaviour, percent };
  });
  const total = mix.reduce((sum, entry) => sum + entry.percent, 0);
  if (Math.abs(total - 100) > 0.01) throw new Error(`behaviour shares must add up to 100 (got ${total})`);
  const assigned: Behaviour[] = [];
  let cumulative = 0;
  for (const entry of mix) {
    cumulative += entry.percent;
    while (assigned.length < Math.round((cumulative / 100) * count)) assigned.push(entry.behaviour);
  }
  return assigned;
}
