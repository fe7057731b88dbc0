import { BigIntType, EntitySchema } from '@mikro-orm/core';
import type { RiskBand } from '../devices/device.entity.js';

/** A device's score each time it changed, and which bundle (fresh or stale) produced it. */
export class RiskHistoryEntry {
  seq!: string;
  deviceRef!: string;
  at!: Date;
  score!: number;
  band!: RiskBand;
  bundleVersion: number | null = null;
  bundleStale = false;
  /** What triggered the rescoring: a factor kind, `attestation`, `policy`, `decay`. */
  cause!: string;
}

export const RiskHistoryEntrySchema = new EntitySchema<RiskHistoryEntry>({
  class: RiskHistoryEntry,
  tableName: 'risk_history',
  properties: {
    seq: { type: new BigIntType('string'), primary: true, autoincrement: true },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    at: { type: 'datetime', columnType: 'timestamptz(3)' },
    score: { type: 'smallint' },
    band: { type: 'string', length: 16 },
    bundleVersion: { type: 'integer', nullable: true },
    bundleStale: { type: 'boolean' },
    cause: { type: 'string', length: 64 },
  },
});
