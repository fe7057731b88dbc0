import { BigIntType, EntitySchema } from '@mikro-orm/core';
import type { RiskFactorKind, Severity } from '../policy/policy-bundle.document.js';

/** One entry of a device's risk trail: what was observed, by whom, and what it weighed when recorded. */
export class RiskFactor {
  /** Monotonic: the trail's cursor. */
  seq!: string;
  deviceRef!: string;
  deviceId!: string;
  kind!: RiskFactorKind;
  severity!: Severity;
  /** Who reported it: `attestation`, `telemetry`, `policy`, or the reporting token's actor. */
  source!: string;
  detail!: string;
  /** The kind's weight and the factor's contribution in points when it was recorded. */
  weight!: number;
  contribution!: number;
  observedAt!: Date;
  recordedAt!: Date;
  /** Reported factors fade with the bundle's half-life; state factors hold until cleared. */
  decays!: boolean;
  /** When a state factor stopped applying (drift fixed, device answering again). */
  clearedAt: Date | null = null;
  /** Identifies repeats of one observation (an indicator, a telemetry rule, a challenge). */
  dedupKey: string | null = null;
  bundleVersion: number | null = null;
}

export const RiskFactorSchema = new EntitySchema<RiskFactor>({
  class: RiskFactor,
  tableName: 'risk_factor',
  properties: {
    seq: { type: new BigIntType('string'), primary: true, autoincrement: true },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    deviceId: { type: 'string', length: 64 },
    kind: { type: 'string', length: 32 },
    severity: { type: 'string', length: 16 },
    source: { type: 'string', length: 200 },
    detail: { type: 'string', length: 1000 },
    weight: { type: 'double' },
    contribution: { type: 'double' },
    observedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    recordedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    decays: { type: 'boolean' },
    clearedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    dedupKey: { type: 'string', length: 300, nullable: true },
    bundleVersion: { type: 'integer', nullable: true },
  },
});
