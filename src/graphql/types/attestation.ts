import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import {
  AttestationResult,
  FAILURE_REASONS,
  OUTCOMES,
  type Outcome,
} from '../../attestation/attestation-result.entity.js';
import { latestResultsOf } from '../../attestation/attestation-result.queries.js';
import type { VersionedSettings } from '../../attestation/attestation-settings.service.js';
import { roleHasScope } from '../../auth/roles.js';
import { actorOf } from '../../auth/token.service.js';
import type { Device } from '../../devices/device.entity.js';
import {
  DeviceNotFoundError,
  ForbiddenError,
  InvalidTransitionError,
  ValidationError,
} from '../../shared/errors.js';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { encodeCursor } from '../cursor.js';
import { validKey } from '../nodes.js';
import { rowNode } from '../row-node.js';
import { seqPage, type SeqWhere } from '../seq-page.js';
import { AttestationStatusEnum, DeviceRef } from './devices.js';
import { MissedEvents, feedUnion, freshItem, subscriberFeed } from './feeds.js';

const CURSOR_KIND = 'attestation';

const OutcomeEnum = builder.enumType('AttestationOutcome', { values: OUTCOMES });
const ReasonEnum = builder.enumType('AttestationFailureReason', { values: FAILURE_REASONS });

/** Rows from the table and events from the bus have the same fields; dates arrive as strings from the bus. */
type ResultShape = Pick<
  AttestationResult,
  | 'seq'
  | 'challengeId'
  | 'deviceId'
  | 'siteId'
  | 'reasons'
  | 'nonceMatch'
  | 'certChainValid'
  | 'signatureValid'
  | 'firmwareHash'
> & {
  outcome: Outcome;
  status: string;
  latencyMs: number | null;
  riskScore: number | null;
  timestamp: Date | string | null;
  receivedAt: Date | string | null;
  decidedAt: Date | string;
  /** Present on rows (the loaders group by it), absent on bus events. */
  deviceRef?: string;
};

const AttestationResultRef = builder.objectRef<ResultShape>('AttestationResult').implement({
  description: 'The decided outcome of one challenge, with each check recorded separately',
  fields: (t) => ({
    challengeId: t.exposeID('challengeId'),
    cursor: t.string({ resolve: (result) => encodeCursor(CURSOR_KIND, result.seq) }),
    device: t.field({ type: DeviceRef, resolve: (result) => result.deviceId }),
    deviceId: t.exposeString('deviceId', {
      description: 'The device id alone, from the result itself: no device read, cheap in live feeds',
    }),
    siteId: t.exposeString('siteId', {
      nullable: true,
      description: 'The site of the device when the result was decided (what the site filters match)',
    }),
    outcome: t.field({ type: OutcomeEnum, resolve: (result) => result.outcome }),
    reasons: t.field({ type: [ReasonEnum], resolve: (result) => result.reasons }),
    nonceMatch: t.exposeBoolean('nonceMatch', { nullable: true }),
    certChainValid: t.exposeBoolean('certChainValid', { nullable: true }),
    signatureValid: t.exposeBoolean('signatureValid', { nullable: true }),
    firmwareHash: t.exposeString('firmwareHash', { nullable: true }),
    timestamp: t.field({ type: 'DateTime', nullable: true, resolve: (result) => result.timestamp }),
    receivedAt: t.field({ type: 'DateTime', nullable: true, resolve: (result) => result.receivedAt }),
    latencyMs: t.exposeInt('latencyMs', { nullable: true }),
    riskScore: t.exposeInt('riskScore', { nullable: true }),
    status: t.field({
      type: AttestationStatusEnum,
      description: 'The device status after this result',
      resolve: (result) => result.status as Device['attestationStatus'],
    }),
    decidedAt: t.field({ type: 'DateTime', resolve: (result) => result.decidedAt }),
  }),
});

rowNode(AttestationResultRef, AttestationResult, 'seq', validKey.sequence);

builder.objectFields(DeviceRef, (t) => ({
  consecutiveFailures: t.exposeInt('consecutiveFailures', { description: 'Timeouts in a row' }),
  lastAttestation: t.loadable({
    type: AttestationResultRef,
    nullable: true,
    load: (ids: string[], context: GraphQLContext) => latestResultsOf(context.em, ids),
    sort: (result) => result.deviceRef ?? '',
    resolve: (device) => device.id,
  }),
  attestations: t.connection({
    type: AttestationResultRef,
    description: 'Newest first',
    resolve: (device, args, context) => resultsPage(context, args, { deviceRef: device.id }, 'newest-first'),
  }),
}));

function resultsPage(
  context: GraphQLContext,
  args: DefaultConnectionArguments,
  where: SeqWhere<AttestationResult>,
  order: 'oldest-first' | 'newest-first',
) {
  return seqPage(context, args, AttestationResult, CURSOR_KIND, where, order);
}

/** The same filter, in the same words, for the SIEM pull and the live feed: subscribe, then backfill. */
function resultFilter(name: string) {
  return builder.inputType(name, {
    fields: (t) => ({
      deviceId: t.string(),
      site: t.string({ description: 'Results decided while their device was at this site (a site id)' }),
      outcome: t.field({ type: [OutcomeEnum] }),
    }),
  });
}

const ResultFilterInput = resultFilter('AttestationResultFilter');

builder.queryField('attestationResults', (t) =>
  t.connection({
    type: AttestationResultRef,
    authScopes: { viewer: true },
    description: 'Results in decision order; a stable cursor lets a SIEM resume without gaps or duplicates',
    args: { filter: t.arg({ type: ResultFilterInput }) },
    resolve: async (_root, args, context) => {
      const where: SeqWhere<AttestationResult> = {};
      if (args.filter?.deviceId) where.deviceId = args.filter.deviceId;
      if (args.filter?.outcome?.length) where.outcome = args.filter.outcome;
      if (args.filter?.site) where.siteId = args.filter.site;
      return resultsPage(context, args, where, 'oldest-first');
    },
  }),
);

const EventFilterInput = resultFilter('AttestationEventFilter');

builder.subscriptionField('attestationEvents', (t) =>
  t.field({
    type: feedUnion('AttestationFeedEvent', AttestationResultRef),
    authScopes: { viewer: true },
    description:
      'Each attestation result as it is decided, filtered on the server; its cursor resumes attestationResults',
    args: { filter: t.arg({ type: EventFilterInput }) },
    subscribe: (_root, args, context) =>
      subscriberFeed(
        context,
        'attestationEvents',
        'attestation.decided',
        (event) =>
          (!args.filter?.deviceId || event.deviceId === args.filter.deviceId) &&
          (!args.filter?.site || event.siteId === args.filter.site) &&
          (!args.filter?.outcome?.length || args.filter.outcome.includes(event.outcome)),
        (event) => encodeCursor(CURSOR_KIND, event.seq),
      ),
    resolve: (item, _args, context) => {
      const fresh = freshItem(item, context);
      return fresh instanceof MissedEvents
        ? fresh
        : { ...fresh, reasons: fresh.reasons as ResultShape['reasons'] };
    },
  }),
);

builder.mutationField('challengeDevice', (t) =>
  t.field({
    type: builder.simpleObject('ChallengeIssued', { fields: (f) => ({ challengeId: f.id() }) }),
    authScopes: { operator: true },
    description: 'Challenges one approved device now',
    errors: { types: [DeviceNotFoundError, InvalidTransitionError] },
    args: { deviceId: t.arg.string({ required: true }) },
    resolve: async (_root, args, context) => ({
      challengeId: await context.services.attestation.challengeNow(
        context.em,
        args.deviceId,
        context.services.challengeTransport,
        actorOf(context.viewer),
      ),
    }),
  }),
);

builder.mutationField('acknowledgeAttestationFailure', (t) =>
  t.field({
    type: DeviceRef,
    authScopes: { operator: true },
    description: 'Clears a FAILED device after investigation; it is challenged again at once',
    errors: { types: [DeviceNotFoundError, InvalidTransitionError] },
    args: { deviceId: t.arg.string({ required: true }), note: t.arg.string({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.attestation.acknowledgeFailure(
        context.em,
        args.deviceId,
        args.note,
        actorOf(context.viewer),
      ),
  }),
);

const SettingsRef = builder.objectRef<VersionedSettings>('AttestationSettings').implement({
  fields: (t) => ({
    version: t.exposeInt('version'),
    nonceSize: t.int({ resolve: (s) => s.values.nonce_size }),
    challengeIntervalCriticalS: t.int({ resolve: (s) => s.values.challenge_interval_critical_s }),
    challengeIntervalStandardS: t.int({ resolve: (s) => s.values.challenge_interval_standard_s }),
    allowedClockSkewS: t.int({ resolve: (s) => s.values.allowed_clock_skew_s }),
    attestationTimeoutS: t.int({ resolve: (s) => s.values.attestation_timeout_s }),
    failureThreshold: t.int({ resolve: (s) => s.values.failure_threshold }),
    changedBy: t.exposeString('changedBy'),
    reason: t.exposeString('reason', { nullable: true }),
    updatedAt: t.field({ type: 'DateTime', resolve: (s) => s.createdAt }),
  }),
});

const SettingsInput = builder.inputType('AttestationSettingsInput', {
  fields: (t) => ({
    nonceSize: t.int(),
    challengeIntervalCriticalS: t.int(),
    challengeIntervalStandardS: t.int(),
    allowedClockSkewS: t.int(),
    attestationTimeoutS: t.int(),
    failureThreshold: t.int(),
    reason: t.string({ description: 'Required when a change weakens security' }),
  }),
});

builder.queryField('attestationSettings', (t) =>
  t.field({
    type: SettingsRef,
    authScopes: { viewer: true },
    resolve: (_root, _args, context) => context.services.attestationSettings.current(context.em),
  }),
);

builder.mutationField('updateAttestationSettings', (t) =>
  t.field({
    type: SettingsRef,
    authScopes: { operator: true },
    description: 'New values apply from the next challenge; weakening needs the admin role and a reason',
    errors: { types: [ValidationError, ForbiddenError] },
    args: { input: t.arg({ type: SettingsInput, required: true }) },
    resolve: (_root, { input }, context) =>
      context.services.attestationSettings.update(
        context.em,
        {
          ...(input.nonceSize != null ? { nonce_size: input.nonceSize } : {}),
          ...(input.challengeIntervalCriticalS != null
            ? { challenge_interval_critical_s: input.challengeIntervalCriticalS }
            : {}),
          ...(input.challengeIntervalStandardS != null
            ? { challenge_interval_standard_s: input.challengeIntervalStandardS }
            : {}),
          ...(input.allowedClockSkewS != null ? { allowed_clock_skew_s: input.allowedClockSkewS } : {}),
          ...(input.attestationTimeoutS != null ? { attestation_timeout_s: input.attestationTimeoutS } : {}),
          ...(input.failureThreshold != null ? { failure_threshold: input.failureThreshold } : {}),
        },
        { actor: actorOf(context.viewer), isAdmin: roleHasScope(context.viewer.role, 'admin') },
        input.reason ?? undefined,
      ),
  }),
);
