import { CASE_SEVERITIES, CASE_SOURCES, CASE_STATUSES, Case } from '../../cases/case.entity.js';
import { builder } from '../builder.js';
import { validKey } from '../nodes.js';
import { rowNode } from '../row-node.js';

const CaseSeverityEnum = builder.enumType('CaseSeverity', { values: CASE_SEVERITIES });
const CaseStatusEnum = builder.enumType('CaseStatus', { values: CASE_STATUSES });
const CaseSourceEnum = builder.enumType('CaseSource', { values: CASE_SOURCES });

/** An investigation for the SOC; the minimal shape devices link to (the cases domain extends it). */
export const CaseRef = builder.objectRef<Case>('Case').implement({
  fields: (t) => ({
    number: t.exposeInt('number'),
    title: t.exposeString('title'),
    severity: t.field({ type: CaseSeverityEnum, resolve: (record) => record.severity }),
    status: t.field({ type: CaseStatusEnum, resolve: (record) => record.status }),
    source: t.field({ type: CaseSourceEnum, resolve: (record) => record.source }),
    openedAt: t.field({ type: 'DateTime', resolve: (record) => record.openedAt }),
    evidence: t.field({ type: 'JSON', resolve: (record) => record.evidence }),
  }),
});

rowNode(CaseRef, Case, 'id', validKey.uuid);
