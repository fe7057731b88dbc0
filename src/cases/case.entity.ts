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

/**
 * An investigation for the SOC. `deviceRef` is the device the case was opened about (the key automatic
 * cases are deduplicated on); every linked device, that one included, is a CaseDevice row. What
 * happened since opening is the timeline (CaseEvent rows), never a growing column.
 */
export class Case {
  id!: string;
  /** Human-facing, gap-tolerant, increasing (a sequence). */
  number!: number;
  title!: string;
  severity!: CaseSeverity;
  status: CaseStatus = 'OPEN';
  source!: CaseSource;
  deviceRef: string | null = null;
  /** What the case was opened with; later evidence is in the timeline. */
  evidence: Record<string, unknown> = {};
  assignee: string | null = null;
  openedAt!: Date;
  updatedAt!: Date;
  closedAt: Date | null = null;
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
    assignee: { type: 'string', length: 200, nullable: true },
    openedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    updatedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    closedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
  },
});
