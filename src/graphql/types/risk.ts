import type { RiskBand } from '../../devices/device.entity.js';
import { actorOf } from '../../auth/token.service.js';
import { RISK_FACTOR_KINDS, SEVERITIES } from '../../policy/policy-bundle.document.js';
import { RiskFactor } from '../../risk/risk-factor.entity.js';
import { topFactorsOf } from '../../risk/risk-factor.queries.js';
import { RiskHistoryEntry } from '../../risk/risk-history.entity.js';
import type { RiskAssessment } from '../../risk/risk.service.js';
import { DeviceNotFoundError, ValidationError } from '../../shared/errors.js';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { encodeCursor } from '../cursor.js';
import { seqPage } from '../seq-page.js';
import { DeviceEventRef, DeviceRef, RiskBandEnum } from './devices.js';

const CURSOR_KIND = 'risk-factor';

const RiskFactorKindEnum = builder.enumType('RiskFactorKind', { values: RISK_FACTOR_KINDS });
export const SeverityEnum = builder.enumType('Severity', { values: SEVERITIES });

const RiskFactorRef = builder.objectRef<RiskFactor>('RiskFactor').implement({
  description: 'One entry of the trail that drove a device score',
  fields: (t) => ({
    cursor: t.string({ resolve: (factor) => encodeCursor(CURSOR_KIND, factor.seq) }),
    kind: t.field({ type: RiskFactorKindEnum, resolve: (factor) => factor.kind }),
    severity: t.field({ type: SeverityEnum, resolve: (factor) => factor.severity }),
    source: t.exposeString('source'),
    detail: t.exposeString('detail'),
    weight: t.exposeFloat('weight', { description: "The kind's weight in the bundle that recorded it" }),
    contribution: t.exposeFloat('contribution', { description: 'Points it added when it was recorded' }),
    observedAt: t.field({ type: 'DateTime', resolve: (factor) => factor.observedAt }),
    recordedAt: t.field({ type: 'DateTime', resolve: (factor) => factor.recordedAt }),
    decays: t.exposeBoolean('decays', {
      description: 'Fades with the bundle half-life; else holds until cleared',
    }),
    clearedAt: t.field({ type: 'DateTime', nullable: true, resolve: (factor) => factor.clearedAt }),
    bundleVersion: t.exposeInt('bundleVersion', { nullable: true }),
  }),
});

const RiskHistoryEntryRef = builder.objectRef<RiskHistoryEntry>('RiskHistoryEntry').implement({
  fields: (t) => ({
    at: t.field({ type: 'DateTime', resolve: (entry) => entry.at }),
    score: t.exposeInt('score'),
    band: t.field({ type: RiskBandEnum, resolve: (entry) => entry.band }),
    bundleVersion: t.exposeInt('bundleVersion', { nullable: true }),
    bundleStale: t.exposeBoolean('bundleStale', { description: 'Scored by a bundle past its maximum age' }),
    cause: t.exposeString('cause'),
  }),
});

const RISK_HISTORY_MAX = 1_000;
const TOP_FACTORS = 3;

builder.objectFields(DeviceRef, (t) => ({
  riskScore: t.exposeInt('riskScore', { description: '0-100' }),
  riskBand: t.field({ type: RiskBandEnum, resolve: (device) => device.riskBand }),
  riskScoredAt: t.field({ type: 'DateTime', nullable: true, resolve: (device) => device.riskScoredAt }),
  policyBundleVersion: t.exposeInt('policyBundleVersion', {
    nullable: true,
    description: 'The bundle version that produced the current score (null: the built-in default policy)',
  }),
  riskFactors: t.connection(
    {
      type: RiskFactorRef,
      description: 'The trail, newest first',
      resolve: (device, args, context) =>
        seqPage(context, args, RiskFactor, CURSOR_KIND, { deviceRef: device.id }, 'newest-first'),
    },
    {
      name: 'RiskFactorConnection',
    },
    { name: 'RiskFactorEdge' },
  ),
  topRiskFactors: t.loadableGroup({
    type: RiskFactorRef,
    description: `The ${TOP_FACTORS} heaviest factors still counting (as recorded), for fleet pages`,
    load: (ids: string[], context: GraphQLContext) => topFactorsOf(context.em, ids, TOP_FACTORS),
    group: (factor) => factor.deviceRef,
    resolve: (device) => device.id,
  }),
  riskHistory: t.field({
    type: [RiskHistoryEntryRef],
    description: `Score changes since the given time, oldest first (at most ${RISK_HISTORY_MAX})`,
    args: { since: t.arg({ type: 'DateTime', required: true }) },
    resolve: (device, args, context) =>
      context.em.find(
        RiskHistoryEntry,
        { deviceRef: device.id, at: { $gte: args.since } },
        { orderBy: { seq: 'asc' }, limit: RISK_HISTORY_MAX },
      ),
  }),
}));

builder.objectFields(DeviceEventRef, (t) => ({
  riskScore: t.exposeInt('riskScore', { description: 'The score after the change' }),
  riskBand: t.field({ type: RiskBandEnum, resolve: (event) => event.riskBand as RiskBand }),
  previousRiskBand: t.field({
    type: RiskBandEnum,
    nullable: true,
    description: 'Set on risk changes (change = risk-band or risk-score)',
    resolve: (event) => event.previousRiskBand as RiskBand | null,
  }),
}));

const RiskReportRef = builder.objectRef<RiskAssessment>('RiskReport').implement({
  fields: (t) => ({
    device: t.field({ type: DeviceRef, resolve: (report) => report.deviceId }),
    score: t.exposeInt('score'),
    band: t.field({ type: RiskBandEnum, resolve: (report) => report.band }),
    duplicate: t.exposeBoolean('duplicate', {
      description: 'True when the same report arrived within the duplicate window: nothing changed',
    }),
    factors: t.field({ type: [RiskFactorRef], resolve: (report) => report.added }),
  }),
});

builder.mutationField('reportIocHit', (t) =>
  t.field({
    type: RiskReportRef,
    authScopes: { integration: true },
    description:
      'An indicator of compromise seen for a device (threat intelligence, SIEM); idempotent per window',
    errors: { types: [DeviceNotFoundError, ValidationError] },
    args: {
      deviceId: t.arg.string({ required: true }),
      indicator: t.arg.string({ required: true }),
      source: t.arg.string({ required: true }),
      severity: t.arg({ type: SeverityEnum, required: true }),
      observedAt: t.arg({ type: 'DateTime', required: true }),
    },
    resolve: (_root, args, context) =>
      context.services.risk.reportIocHit(context.em, args, actorOf(context.viewer)),
  }),
);

builder.mutationField('reportTelemetryAnomaly', (t) =>
  t.field({
    type: RiskReportRef,
    authScopes: { integration: true },
    description: 'An anomaly an external detector saw; idempotent per device and kind within the window',
    errors: { types: [DeviceNotFoundError, ValidationError] },
    args: {
      deviceId: t.arg.string({ required: true }),
      kind: t.arg.string({ required: true }),
      severity: t.arg({ type: SeverityEnum, required: true }),
      detail: t.arg.string({ required: true }),
    },
    resolve: (_root, args, context) =>
      context.services.risk.reportTelemetryAnomaly(context.em, args, actorOf(context.viewer)),
  }),
);
