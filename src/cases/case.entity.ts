import { EntitySchema } from '@mikro-orm/core';

export const CASE_STATUSES = ['OPEN', 'INVESTIGATING', 'RESOLVED', 'CLOSED'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];
export const CASE_SOURCES = [
  'ATTESTATION_FAILURE',
  'UNRESPONSIVE',
  'ENROLLMENT_REJECTED',
  'RISK_CRITICAL',
  'MANUAL',
] as const;
export type CaseSource = (typeof CASE_SOURCES)[number];
export const CASE_SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type CaseSeverity = (typeof CASE_SEVERITIES)[number];

/** An investigation for the SOC. The minimal shape enrollment needs; the cases domain grows it. */
export class Case {
  id!: string;
  /** Human-facing, gap-tolerant, increasing (a sequence). */
  number!: number;
  title!: string;
  severity!: CaseSeverity;
  status: CaseStatus = 'OPEN';
  source!: CaseSource;
  deviceRef: string | null = null;
  evidence: Record<string, unknown> = {};
  openedAt!: Date;
  updatedAt!: Date;
}

export const CaseSchema = new EntitySchema<Case>({
  class: Case,
  tableName: 'case_record',
  properties: {
    id: { type: 'uuid', primary: true },
    number: { type: 'integer', unique: true },
    title: { type: 'string', length: 300 },
    severity: { type: 'string', length: 16 },
    status: { type: 'string', length: 16 },
    source: { type: 'string', length: 32 },
    deviceRef: { type: 'uuid', nullable: true, fieldName: 'device_ref' },
    evidence: { type: 'json' },
    openedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    updatedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
  },
});
