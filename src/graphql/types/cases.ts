import { actorOf } from '../../auth/token.service.js';
import { CASE_EVENT_KINDS, CaseEvent, type CaseEventKind } from '../../cases/case-event.entity.js';
import { CASE_SEVERITIES, CASE_SOURCES, CASE_STATUSES, Case } from '../../cases/case.entity.js';
import { CaseNotFoundError } from '../../cases/case.errors.js';
import type { Attachment } from '../../cases/case.rules.js';
import type { KeysetPage } from '../../cases/case.service.js';
import {
  ConflictError,
  DeviceNotFoundError,
  InvalidTransitionError,
  ValidationError,
} from '../../shared/errors.js';
import type { CaseEventRecordedEvent } from '../../shared/events.js';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { PAGE_SIZE, decodeSequenceCursor, encodeCursor, keysetConnection } from '../cursor.js';
import { validKey } from '../nodes.js';
import { rowNode } from '../row-node.js';
import { seqPage } from '../seq-page.js';
import { feedUnion, freshItem, subscriberFeed } from './feeds.js';
import { DeviceRef } from './devices.js';
import { ErrorInterface } from './errors.js';

const CASE_CURSOR = 'case';
const EVENT_CURSOR = 'case-event';

const CaseSeverityEnum = builder.enumType('CaseSeverity', { values: CASE_SEVERITIES });
const CaseStatusEnum = builder.enumType('CaseStatus', { values: CASE_STATUSES });
const CaseSourceEnum = builder.enumType('CaseSource', { values: CASE_SOURCES });
const CaseEventKindEnum = builder.enumType('CaseEventKind', { values: CASE_EVENT_KINDS });

builder.objectType(CaseNotFoundError, {
  name: 'CaseNotFound',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof CaseNotFoundError,
  fields: (t) => ({ number: t.exposeInt('number') }),
});

/** Both cursors are over a key that only grows (case number, timeline seq). */
function keyset(
  kind: string,
  page: { after?: string; before?: string; limit: number; inverted: boolean },
): KeysetPage {
  const key = (cursor: string | undefined) =>
    cursor === undefined ? undefined : decodeSequenceCursor(kind, cursor);
  return { after: key(page.after), before: key(page.before), limit: page.limit, reversed: page.inverted };
}

export const CaseRef = builder.objectRef<Case>('Case');

/** Rows from the table and events from the bus have these fields; dates arrive as strings from the bus. */
type CaseEventShape = Pick<CaseEventRecordedEvent, 'seq' | 'caseRef' | 'actor' | 'body' | 'payload'> & {
  kind: string;
  at: Date | string;
};

const CaseAttachmentRef = builder.objectRef<Attachment>('CaseAttachment').implement({
  description: 'A JSON document attached to a case, such as a firmware inventory snapshot',
  fields: (t) => ({
    name: t.exposeString('name'),
    mediaType: t.exposeString('mediaType'),
    size: t.exposeInt('size', { description: 'Bytes of its canonical (RFC 8785) JSON form' }),
    content: t.field({ type: 'JSON', resolve: (attachment) => attachment.content }),
  }),
});

const CaseEventRef = builder.objectRef<CaseEventShape>('CaseEvent').implement({
  description: "One entry of a case's timeline, as committed",
  fields: (t) => ({
    cursor: t.string({
      description: 'Accepted by Case.timeline(after:), to read on from this entry',
      resolve: (event) => encodeCursor(EVENT_CURSOR, event.seq),
    }),
    kind: t.field({ type: CaseEventKindEnum, resolve: (event) => event.kind as CaseEventKind }),
    actor: t.exposeString('actor'),
    at: t.field({ type: 'DateTime', resolve: (event) => event.at }),
    body: t.exposeString('body', {
      nullable: true,
      description: "A note's text, a status change's reason, evidence's headline, an attachment's name",
    }),
    payload: t.field({
      type: 'JSON',
      description:
        'By kind: OPENED {source, severity, evidence}; EVIDENCE {severity, evidence}; STATUS_CHANGED and ASSIGNED {from, to}; ATTACHMENT the attachment; DEVICE_LINKED {deviceId}',
      resolve: (event) => event.payload,
    }),
    attachment: t.field({
      type: CaseAttachmentRef,
      nullable: true,
      resolve: (event) => (event.kind === 'ATTACHMENT' ? (event.payload as unknown as Attachment) : null),
    }),
    case: t.loadable({
      type: CaseRef,
      description: 'The case as it is now (read when the entry is delivered)',
      load: (ids: string[], context: GraphQLContext) => context.services.cases.casesByIds(context.em, ids),
      sort: (record) => record.id,
      resolve: (event) => event.caseRef,
    }),
  }),
});

CaseRef.implement({
  description: 'An investigation for the SOC, with the devices it is about and its timeline',
  fields: (t) => ({
    number: t.exposeInt('number'),
    title: t.exposeString('title'),
    severity: t.field({ type: CaseSeverityEnum, resolve: (record) => record.severity }),
    status: t.field({ type: CaseStatusEnum, resolve: (record) => record.status }),
    source: t.field({ type: CaseSourceEnum, resolve: (record) => record.source }),
    assignee: t.exposeString('assignee', { nullable: true }),
    openedAt: t.field({ type: 'DateTime', resolve: (record) => record.openedAt }),
    updatedAt: t.field({ type: 'DateTime', resolve: (record) => record.updatedAt }),
    closedAt: t.field({ type: 'DateTime', nullable: true, resolve: (record) => record.closedAt }),
    evidence: t.field({
      type: 'JSON',
      description: 'What the case was opened with; later evidence is in the timeline',
      resolve: (record) => record.evidence,
    }),
    devices: t.loadableList({
      type: DeviceRef,
      description: 'The devices the case is about, the one it was opened for first',
      load: (ids: string[], context: GraphQLContext) =>
        context.services.cases.devicesOfCases(context.em, ids),
      resolve: (record) => record.id,
    }),
    timeline: t.connection({
      type: CaseEventRef,
      description: `Oldest first; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
      resolve: (record, args, context) =>
        seqPage(context, args, CaseEvent, EVENT_CURSOR, { caseRef: record.id }, 'oldest-first'),
    }),
  }),
});

rowNode(CaseRef, Case, 'id', validKey.uuid);

builder.objectFields(DeviceRef, (t) => ({
  cases: t.loadableList({
    type: CaseRef,
    description: 'Cases about the device, newest first',
    byPath: true,
    args: { status: t.arg({ type: [CaseStatusEnum], description: 'Only cases in these statuses' }) },
    load: (ids: string[], context: GraphQLContext, args) =>
      context.services.cases.casesOfDevices(context.em, ids, args.status ?? undefined),
    resolve: (device) => device.id,
  }),
}));

// Queries

const CaseFilterInput = builder.inputType('CaseFilter', {
  fields: (t) => ({
    status: t.field({ type: [CaseStatusEnum] }),
    source: t.field({ type: [CaseSourceEnum] }),
    severity: t.field({ type: [CaseSeverityEnum] }),
    deviceId: t.string({ description: 'Cases linked to this device' }),
    assignee: t.string(),
  }),
});

builder.queryField('case', (t) =>
  t.field({
    type: CaseRef,
    nullable: true,
    authScopes: { viewer: true },
    args: { number: t.arg.int({ required: true }) },
    resolve: (_root, args, context) => context.services.cases.findByNumber(context.em, args.number),
  }),
);

builder.queryField('cases', (t) =>
  t.connection(
    {
      type: CaseRef,
      authScopes: { viewer: true },
      description: `Newest first; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
      args: { filter: t.arg({ type: CaseFilterInput }) },
      resolve: async (_root, args, context) => {
        const wanted = {
          ...(args.filter?.status ? { status: args.filter.status } : {}),
          ...(args.filter?.source ? { source: args.filter.source } : {}),
          ...(args.filter?.severity ? { severity: args.filter.severity } : {}),
          ...(typeof args.filter?.deviceId === 'string' ? { deviceId: args.filter.deviceId } : {}),
          ...(typeof args.filter?.assignee === 'string' ? { assignee: args.filter.assignee } : {}),
        };
        const connection = await keysetConnection(
          args,
          (record: Case) => encodeCursor(CASE_CURSOR, String(record.number)),
          (page) => context.services.cases.list(context.em, wanted, keyset(CASE_CURSOR, page)),
        );
        // Counted only when selected.
        return { ...connection, totalCount: () => context.services.cases.count(context.em, wanted) };
      },
    },
    {
      name: 'CaseConnection',
    },
    { name: 'CaseEdge' },
  ),
);

// Mutations (operator): each is one transaction with its audit event; refusals are audited too.

const EDIT_ERRORS = [CaseNotFoundError, InvalidTransitionError, ValidationError];

const OpenCaseInputRef = builder.inputType('OpenCaseInput', {
  fields: (t) => ({
    title: t.string({ required: true }),
    severity: t.field({ type: CaseSeverityEnum, required: true }),
    deviceIds: t.stringList({ description: 'The devices it is about; the first is the primary one' }),
    note: t.string({ description: 'A first note on the timeline' }),
    assignee: t.string(),
  }),
});

builder.mutationField('openCase', (t) =>
  t.field({
    type: CaseRef,
    authScopes: { operator: true },
    description: 'Opens a MANUAL case (manual cases are not deduplicated)',
    errors: { types: [ValidationError, DeviceNotFoundError] },
    args: { input: t.arg({ type: OpenCaseInputRef, required: true }) },
    resolve: (_root, { input }, context) =>
      context.services.cases.open(
        context.em,
        {
          title: input.title,
          severity: input.severity,
          deviceIds: input.deviceIds ?? [],
          note: input.note ?? null,
          assignee: input.assignee ?? null,
        },
        actorOf(context.viewer),
      ),
  }),
);

builder.mutationField('addCaseNote', (t) =>
  t.field({
    type: CaseEventRef,
    authScopes: { operator: true },
    description: 'Adds a note to the timeline; a CLOSED case must be reopened first (InvalidTransition)',
    errors: { types: EDIT_ERRORS },
    args: { number: t.arg.int({ required: true }), note: t.arg.string({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.cases.addNote(context.em, args.number, args.note, actorOf(context.viewer)),
  }),
);

builder.mutationField('attachToCase', (t) =>
  t.field({
    type: CaseEventRef,
    authScopes: { operator: true },
    description:
      'Attaches a JSON document (application/json or application/*+json, at most 128 KiB canonical)',
    errors: { types: EDIT_ERRORS },
    args: {
      number: t.arg.int({ required: true }),
      name: t.arg.string({ required: true }),
      mediaType: t.arg.string({ required: true }),
      content: t.arg({ type: 'JSON', required: true }),
    },
    resolve: (_root, args, context) =>
      context.services.cases.attach(
        context.em,
        args.number,
        args.name,
        args.mediaType,
        args.content,
        actorOf(context.viewer),
      ),
  }),
);

builder.mutationField('assignCase', (t) =>
  t.field({
    type: CaseRef,
    authScopes: { operator: true },
    description: 'Assigns the case; a null or blank assignee unassigns it',
    errors: { types: EDIT_ERRORS },
    args: { number: t.arg.int({ required: true }), assignee: t.arg.string() },
    resolve: (_root, args, context) =>
      context.services.cases.assign(context.em, args.number, args.assignee ?? null, actorOf(context.viewer)),
  }),
);

builder.mutationField('linkDeviceToCase', (t) =>
  t.field({
    type: CaseRef,
    authScopes: { operator: true },
    errors: { types: [...EDIT_ERRORS, DeviceNotFoundError, ConflictError] },
    args: { number: t.arg.int({ required: true }), deviceId: t.arg.string({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.cases.linkDevice(context.em, args.number, args.deviceId, actorOf(context.viewer)),
  }),
);

builder.mutationField('setCaseStatus', (t) =>
  t.field({
    type: CaseRef,
    authScopes: { operator: true },
    description:
      'OPEN -> INVESTIGATING | CLOSED; INVESTIGATING -> RESOLVED | CLOSED; RESOLVED -> CLOSED | INVESTIGATING (reopen); CLOSED -> OPEN (reopen). Closing without resolving, resolving and reopening need a reason.',
    errors: { types: [...EDIT_ERRORS, ConflictError] },
    args: {
      number: t.arg.int({ required: true }),
      status: t.arg({ type: CaseStatusEnum, required: true }),
      reason: t.arg.string(),
    },
    resolve: (_root, args, context) =>
      context.services.cases.setStatus(
        context.em,
        args.number,
        args.status,
        args.reason ?? null,
        actorOf(context.viewer),
      ),
  }),
);

// Subscriptions

const CaseEventFilterInput = builder.inputType('CaseEventFilter', {
  fields: (t) => ({
    number: t.int({ description: 'One case' }),
    deviceId: t.string({ description: 'Cases linked to this device' }),
    source: t.field({ type: [CaseSourceEnum] }),
    severity: t.field({ type: [CaseSeverityEnum] }),
  }),
});

type CaseEventFilterArgs = typeof CaseEventFilterInput.$inferInput;

function matches(event: CaseEventRecordedEvent, wanted: CaseEventFilterArgs | null | undefined): boolean {
  if (!wanted) return true;
  if (typeof wanted.number === 'number' && event.caseNumber !== wanted.number) return false;
  if (typeof wanted.deviceId === 'string' && !event.deviceIds.includes(wanted.deviceId)) return false;
  if (wanted.source?.length && !(wanted.source as readonly string[]).includes(event.source)) return false;
  if (wanted.severity?.length && !(wanted.severity as readonly string[]).includes(event.severity))
    return false;
  return true;
}

builder.subscriptionField('caseEvents', (t) =>
  t.field({
    type: feedUnion('CaseFeedEvent', CaseEventRef),
    authScopes: { viewer: true },
    description: 'Timeline entries of cases as they commit, filtered on the server',
    args: { filter: t.arg({ type: CaseEventFilterInput }) },
    subscribe: (_root, args, context) =>
      subscriberFeed(
        context,
        'caseEvents',
        'case.event-recorded',
        (event) => matches(event, args.filter),
        // Timelines are per case: after a gap, the subscriber re-reads the cases it follows.
        () => null,
      ),
    resolve: (item, _args, context) => freshItem(item, context),
  }),
);
