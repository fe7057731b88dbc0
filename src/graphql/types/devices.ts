import { actorOf } from '../../auth/token.service.js';
import { activeCertificatesOf, certificatesOfDevices } from '../../certificates/certificate-list.js';
import {
  ATTESTATION_STATUSES,
  DEVICE_TYPES,
  ENROLLMENT_STATES,
  RISK_BANDS,
  type AttestationStatus,
  type Device,
  type EnrollmentState,
} from '../../devices/device.entity.js';
import { parseInventoryFile } from '../../devices/inventory-file.js';
import {
  DEVICE_ORDER_FIELDS,
  type DeviceKey,
  type DeviceListFilter,
  type DeviceOrderField,
  type ImportRowResult,
  type RegistrationOutcome,
} from '../../devices/inventory.service.js';
import {
  ConflictError,
  DeviceNotFoundError,
  ForbiddenError,
  InvalidTransitionError,
  ValidationError,
} from '../../shared/errors.js';
import type { DeviceChangedEvent } from '../../shared/events.js';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { GraphQLError } from 'graphql';
import { PAGE_SIZE, decodeCursor, encodeCursor, keysetConnection } from '../cursor.js';
import { CertificateRef, RevocationReasonEnum } from './certificates.js';
import { feedUnion, freshItem, subscriberFeed } from './feeds.js';

const CURSOR_KIND = 'device';

export const DeviceTypeEnum = builder.enumType('DeviceType', { values: DEVICE_TYPES });
export const AttestationStatusEnum = builder.enumType('AttestationStatus', { values: ATTESTATION_STATUSES });
const EnrollmentStateEnum = builder.enumType('EnrollmentState', { values: ENROLLMENT_STATES });
export const RiskBandEnum = builder.enumType('RiskBand', {
  values: RISK_BANDS,
  description: 'NORMAL 0-30 (green), ELEVATED 31-70 (yellow), CRITICAL 71-100 (red)',
});
export const CriticalityEnum = builder.enumType('Criticality', {
  values: { CRITICAL: { value: 'critical' }, STANDARD: { value: 'standard' } } as const,
});
const RegistrationOutcomeEnum = builder.enumType('RegistrationOutcome', {
  values: {
    CREATED: { value: 'created' },
    UPDATED: { value: 'updated' },
    UNCHANGED: { value: 'unchanged' },
    RE_REGISTERED: {
      value: 're-registered',
      description: 'The device had been revoked or rejected; it may enroll again',
    },
  } as const,
});

/**
 * Loaded by device id (the business key), so `device(deviceId)`, `node(id)` and events batch and share
 * rows; the global id wraps the device id too.
 */
export const DeviceRef = builder.loadableNodeRef('Device', {
  id: { resolve: (device) => device.deviceId },
  load: (deviceIds: string[], context: GraphQLContext) =>
    context.services.inventory.byDeviceIds(context.em, deviceIds),
  sort: (device) => device.deviceId,
});

DeviceRef.implement({
  description: 'A device of the fleet: its inventory record, identity and attestation state',
  fields: (t) => ({
    deviceId: t.exposeString('deviceId'),
    type: t.field({ type: DeviceTypeEnum, resolve: (device) => device.type }),
    model: t.exposeString('model', { nullable: true }),
    criticality: t.field({ type: CriticalityEnum, resolve: (device) => device.criticality }),
    attestationStatus: t.field({
      type: AttestationStatusEnum,
      resolve: (device) => device.attestationStatus,
    }),
    enrollmentState: t.field({ type: EnrollmentStateEnum, resolve: (device) => device.enrollmentState }),
    isolated: t.exposeBoolean('isolated', {
      description: 'Isolated by an operator: the broker refuses everything it sends but attestation answers',
    }),
    cdiCommitment: t.exposeString('cdiCommitment', {
      nullable: true,
      description: 'What the device presented at enrollment (`sha256:` + hex)',
    }),
    expectedCdiCommitment: t.exposeString('expectedCdiCommitment', { nullable: true }),
    expectedSpkiSha256: t.exposeString('expectedSpkiSha256', { nullable: true }),
    goldenFirmwareHash: t.exposeString('goldenFirmwareHash', { nullable: true }),
    firmwareVersion: t.exposeString('firmwareVersion', {
      nullable: true,
      description:
        'The version of `firmwareHash`: as reported at enrollment, then as the policy bundle lists the image (null when it does not)',
    }),
    firmwareHash: t.exposeString('firmwareHash', {
      nullable: true,
      description:
        'The firmware the device runs: the image of its last PASS, at first the one it enrolled with',
    }),
    registeredAt: t.field({ type: 'DateTime', resolve: (device) => device.registeredAt }),
    updatedAt: t.field({ type: 'DateTime', resolve: (device) => device.updatedAt }),
    nextChallengeAt: t.field({
      type: 'DateTime',
      nullable: true,
      resolve: (device) => device.nextChallengeAt,
    }),
    certificates: t.loadableGroup({
      type: CertificateRef,
      description: 'Every certificate issued to the device, newest first',
      load: (ids: string[], context: GraphQLContext) => certificatesOfDevices(context.em, ids),
      group: (certificate) => certificate.deviceRef,
      resolve: (device) => device.id,
    }),
    currentCertificate: t.loadable({
      type: CertificateRef,
      nullable: true,
      description: 'The one ACTIVE certificate, if any',
      load: (ids: string[], context: GraphQLContext) => activeCertificatesOf(context.em, ids),
      sort: (certificate) => certificate.deviceRef,
      resolve: (device) => device.id,
    }),
  }),
});

// Queries

const DeviceFilterInput = builder.inputType('DeviceFilter', {
  fields: (t) => ({
    attestationStatus: t.field({ type: [AttestationStatusEnum] }),
    type: t.field({ type: [DeviceTypeEnum] }),
    site: t.string({ description: 'A site id' }),
    criticality: t.field({ type: CriticalityEnum }),
    deviceIdPrefix: t.string(),
    enrollmentState: t.field({
      type: [EnrollmentStateEnum],
      description: 'Naming REJECTED here includes rejected devices',
    }),
    includeRejected: t.boolean({
      defaultValue: false,
      description: 'Rejected devices are left out unless this is true or enrollmentState names REJECTED',
    }),
    riskBand: t.field({ type: [RiskBandEnum] }),
    riskAbove: t.int({ description: 'Risk score strictly above this value' }),
    isolated: t.boolean(),
    pendingLongerThanSeconds: t.int({ description: 'PENDING devices registered more than this long ago' }),
    online: t.boolean({ description: 'Devices heard from within the online window (true) or not (false)' }),
  }),
});

const DeviceOrderFieldEnum = builder.enumType('DeviceOrderField', { values: DEVICE_ORDER_FIELDS });
const OrderDirectionEnum = builder.enumType('OrderDirection', { values: ['ASC', 'DESC'] as const });

const DeviceOrderInput = builder.inputType('DeviceOrder', {
  fields: (t) => ({
    field: t.field({ type: DeviceOrderFieldEnum, required: true }),
    direction: t.field({ type: OrderDirectionEnum, defaultValue: 'ASC' }),
  }),
});

/** A device cursor names its order, so a cursor of one order is never replayed on another. */
function encodeDeviceCursor(order: DeviceOrderField, key: DeviceKey): string {
  return encodeCursor(CURSOR_KIND, JSON.stringify([order, key.value, key.deviceId]));
}

function decodeDeviceCursor(order: DeviceOrderField, cursor: string): DeviceKey {
  const invalid = () =>
    new GraphQLError(`Invalid cursor for devices ordered by ${order}`, {
      extensions: { code: 'INVALID_CURSOR' },
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(decodeCursor(CURSOR_KIND, cursor));
  } catch (error) {
    if (error instanceof GraphQLError) throw error;
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 3 || parsed[0] !== order || typeof parsed[2] !== 'string') {
    throw invalid();
  }
  const value: unknown = parsed[1];
  if (value !== null && typeof value !== 'string' && typeof value !== 'number') throw invalid();
  return { value, deviceId: parsed[2] };
}

type DeviceFilterArgs = typeof DeviceFilterInput.$inferInput;

function toListFilter(
  input: DeviceFilterArgs | null | undefined,
  now: Date,
  onlineCutoff: Date,
): DeviceListFilter {
  return {
    attestationStatus: input?.attestationStatus ?? undefined,
    type: input?.type ?? undefined,
    siteId: input?.site ?? undefined,
    criticality: input?.criticality ?? undefined,
    deviceIdPrefix: input?.deviceIdPrefix ?? undefined,
    enrollmentState: input?.enrollmentState ?? undefined,
    includeRejected: input?.includeRejected ?? false,
    riskBand: input?.riskBand ?? undefined,
    riskAbove: input?.riskAbove ?? undefined,
    isolated: input?.isolated ?? undefined,
    pendingSince:
      input?.pendingLongerThanSeconds == null
        ? undefined
        : new Date(now.getTime() - input.pendingLongerThanSeconds * 1000),
    online: typeof input?.online === 'boolean' ? { value: input.online, cutoff: onlineCutoff } : undefined,
  };
}

builder.queryField('device', (t) =>
  t.field({
    type: DeviceRef,
    nullable: true,
    authScopes: { viewer: true },
    description: 'A device by its device id; null when the inventory has none',
    args: { deviceId: t.arg.string({ required: true }) },
    resolve: (_root, args) => args.deviceId,
  }),
);

builder.queryField('devices', (t) =>
  t.connection(
    {
      type: DeviceRef,
      authScopes: { viewer: true },
      description: `The fleet, in device-id order unless asked; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
      args: { filter: t.arg({ type: DeviceFilterInput }), orderBy: t.arg({ type: DeviceOrderInput }) },
      resolve: async (_root, args, context) => {
        const listFilter = toListFilter(
          args.filter,
          context.services.clock.now(),
          context.services.sites.onlineCutoff(),
        );
        const order = {
          field: args.orderBy?.field ?? 'DEVICE_ID',
          ascending: (args.orderBy?.direction ?? 'ASC') === 'ASC',
        };
        const connection = await keysetConnection(
          args,
          (device: Device) =>
            encodeDeviceCursor(order.field, context.services.inventory.orderKey(device, order.field)),
          ({ before, after, limit, inverted }): Promise<Device[]> =>
            context.services.inventory.list(context.em, listFilter, {
              order,
              after: after === undefined ? undefined : decodeDeviceCursor(order.field, after),
              before: before === undefined ? undefined : decodeDeviceCursor(order.field, before),
              limit,
              inverted,
            }),
        );
        // Counted only when selected.
        return { ...connection, totalCount: () => context.services.inventory.count(context.em, listFilter) };
      },
    },
    {
      name: 'DeviceConnection',
    },
    { name: 'DeviceEdge' },
  ),
);

// Mutations

const RegisterDeviceInput = builder.inputType('RegisterDeviceInput', {
  fields: (t) => ({
    deviceId: t.string({ required: true }),
    deviceType: t.field({ type: DeviceTypeEnum, required: true }),
    model: t.string(),
    site: t.string({ description: 'A site id' }),
    criticality: t.field({ type: CriticalityEnum, description: 'STANDARD when not given' }),
    expectedCdiCommitment: t.string({ description: '`sha256:` + 64 lowercase hex' }),
    expectedSpkiSha256: t.string({ description: '64 lowercase hex' }),
    goldenFirmwareHash: t.string({ description: '`sha256:` + 64 lowercase hex' }),
  }),
});

type RegisterDeviceArgs = typeof RegisterDeviceInput.$inferInput;

/** GraphQL's camelCase input field -> the runbook's snake_case row field InventoryService validates. */
const REGISTRATION_FIELDS = {
  deviceId: 'device_id',
  deviceType: 'device_type',
  model: 'model',
  site: 'site',
  criticality: 'criticality',
  expectedCdiCommitment: 'expected_cdi_commitment',
  expectedSpkiSha256: 'expected_spki_sha256',
  goldenFirmwareHash: 'golden_firmware_hash',
} as const satisfies Record<keyof RegisterDeviceArgs, string>;

const INPUT_FIELD_OF = new Map<string, string>(
  Object.entries(REGISTRATION_FIELDS).map(([input, row]) => [row, input]),
);

function toRegistrationRow(input: RegisterDeviceArgs): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(REGISTRATION_FIELDS).map(([field, rowField]) => [
      rowField,
      input[field as keyof RegisterDeviceArgs],
    ]),
  );
}

/** Names a row field the way the GraphQL caller wrote it. */
function inputFieldName(rowField: string): string {
  return INPUT_FIELD_OF.get(rowField) ?? rowField;
}

const RegisterDevicePayload = builder.simpleObject('RegisterDevicePayload', {
  fields: (t) => ({
    device: t.field({ type: DeviceRef }),
    outcome: t.field({ type: RegistrationOutcomeEnum }),
  }),
});

builder.mutationField('registerDevice', (t) =>
  t.field({
    type: RegisterDevicePayload,
    authScopes: { facilities: true },
    description: 'Adds a device to the inventory or updates it; registering it unchanged changes nothing',
    errors: { types: [ValidationError, ConflictError] },
    args: { input: t.arg({ type: RegisterDeviceInput, required: true }) },
    resolve: async (_root, args, context) => {
      try {
        return await context.services.inventory.register(
          context.em,
          toRegistrationRow(args.input),
          actorOf(context.viewer),
        );
      } catch (error) {
        if (error instanceof ValidationError) {
          throw new ValidationError(inputFieldName(error.field), error.message, error.reason);
        }
        throw error;
      }
    },
  }),
);

const ImportDeviceInventoryInput = builder.inputType('ImportDeviceInventoryInput', {
  description: 'Exactly one of devices, csv or jsonLines',
  fields: (t) => ({
    devices: t.field({ type: [RegisterDeviceInput] }),
    csv: t.string({ description: 'A header line naming the runbook fields (device_id, device_type, ...)' }),
    jsonLines: t.string({ description: 'One JSON object per line, with the runbook field names' }),
  }),
});

interface ImportRowShape {
  row: number;
  deviceId: string | null;
  outcome: RegistrationOutcome | null;
  field: string | null;
  message: string | null;
}

const ImportRowRef = builder.simpleObject('ImportRow', {
  fields: (t) => ({
    row: t.int({ description: 'Position in the list, from 1 (the CSV header is not counted)' }),
    deviceId: t.string({ nullable: true }),
    outcome: t.field({
      type: RegistrationOutcomeEnum,
      nullable: true,
      description: 'Null when the row failed; field and message say why',
    }),
    field: t.string({ nullable: true }),
    message: t.string({ nullable: true }),
  }),
});

const ImportDeviceInventoryPayload = builder.simpleObject('ImportDeviceInventoryPayload', {
  fields: (t) => ({
    total: t.int(),
    created: t.int(),
    updated: t.int(),
    unchanged: t.int(),
    reRegistered: t.int(),
    failed: t.int(),
    rows: t.field({ type: [ImportRowRef], description: 'Every row, in list order' }),
  }),
});

builder.mutationField('importDeviceInventory', (t) =>
  t.field({
    type: ImportDeviceInventoryPayload,
    authScopes: { facilities: true },
    description: 'Registers a vendor list; bad rows are reported and skipped, the others committed',
    errors: { types: [ValidationError] },
    args: { input: t.arg({ type: ImportDeviceInventoryInput, required: true }) },
    resolve: async (_root, args, context) => {
      const { devices, csv, jsonLines } = args.input;
      const given = [devices, csv, jsonLines].filter((value) => value !== null && value !== undefined);
      if (given.length !== 1) {
        throw new ValidationError('input', 'give exactly one of devices, csv or jsonLines');
      }
      const rows = devices
        ? devices.map(toRegistrationRow)
        : typeof csv === 'string'
          ? parseInventoryFile(csv, 'csv')
          : parseInventoryFile(jsonLines ?? '', 'jsonl');
      const results = await context.services.inventory.import(context.em, rows, actorOf(context.viewer));
      const count = (outcome: ImportRowResult['outcome']) =>
        results.filter((result) => result.outcome === outcome).length;
      return {
        total: results.length,
        created: count('created'),
        updated: count('updated'),
        unchanged: count('unchanged'),
        reRegistered: count('re-registered'),
        failed: count('error'),
        rows: results.map((result): ImportRowShape => ({
          row: result.row,
          deviceId: result.deviceId,
          outcome: registrationOutcome(result.outcome),
          // The structured list is written in GraphQL's field names; files in the runbook's.
          field: result.error ? (devices ? inputFieldName(result.error.field) : result.error.field) : null,
          message: result.error?.message ?? null,
        })),
      };
    },
  }),
);

/** Failed rows carry no outcome in the API: field and message describe them. */
function registrationOutcome(outcome: ImportRowResult['outcome']): RegistrationOutcome | null {
  return outcome === 'error' ? null : outcome;
}

const IssuedEnrollmentToken = builder.simpleObject('IssuedEnrollmentToken', {
  fields: (t) => ({
    ott: t.string({ description: 'Single use; give it to the device for EST enrollment. Shown once.' }),
    expiresAt: t.field({ type: 'DateTime' }),
  }),
});

builder.mutationField('issueEnrollmentToken', (t) =>
  t.field({
    type: IssuedEnrollmentToken,
    authScopes: { operator: true },
    description: "A one-time token bound to the device's expected CDI commitment",
    errors: { types: [ForbiddenError, ValidationError] },
    args: { deviceId: t.arg.string({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.otts.issueForOperator(context.em, args.deviceId, actorOf(context.viewer)),
  }),
);

builder.mutationField('approveDevice', (t) =>
  t.field({
    type: DeviceRef,
    authScopes: { operator: true },
    description: 'Accepts an enrolled device into the fleet; its first challenge goes out at once',
    errors: { types: [DeviceNotFoundError, InvalidTransitionError, ConflictError] },
    args: { deviceId: t.arg.string({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.lifecycle.approve(context.em, args.deviceId, actorOf(context.viewer)),
  }),
);

builder.mutationField('rejectDevice', (t) =>
  t.field({
    type: DeviceRef,
    authScopes: { operator: true },
    description: 'Refuses an enrolled device: its certificates are revoked and a case is opened',
    errors: { types: [DeviceNotFoundError, InvalidTransitionError, ConflictError, ValidationError] },
    args: {
      deviceId: t.arg.string({ required: true }),
      reason: t.arg.string({ required: true }),
    },
    resolve: (_root, args, context) =>
      context.services.lifecycle.reject(context.em, args.deviceId, args.reason, actorOf(context.viewer)),
  }),
);

builder.mutationField('revokeDevice', (t) =>
  t.field({
    type: DeviceRef,
    authScopes: { operator: true },
    description: 'Withdraws the identity of a device: its certificates are revoked and it is disconnected',
    errors: { types: [DeviceNotFoundError, InvalidTransitionError, ConflictError, ValidationError] },
    args: {
      deviceId: t.arg.string({ required: true }),
      reason: t.arg.string({ required: true }),
      reasonCode: t.arg({ type: RevocationReasonEnum, defaultValue: 'UNSPECIFIED' }),
    },
    resolve: (_root, args, context) =>
      context.services.lifecycle.revoke(
        context.em,
        args.deviceId,
        args.reason,
        args.reasonCode ?? 'UNSPECIFIED',
        actorOf(context.viewer),
      ),
  }),
);

const ISOLATION_MUTATIONS = [
  {
    name: 'isolateDevice',
    operation: 'isolate',
    description:
      'Cuts a device off from everything but attestation: the broker refuses its other messages; ' +
      'its open cases record it (a MANUAL case is opened when it has none)',
  },
  {
    name: 'releaseDevice',
    operation: 'release',
    description: 'Lifts the isolation of a device; its open cases record the release',
  },
] as const;

for (const { name, operation, description } of ISOLATION_MUTATIONS) {
  builder.mutationField(name, (t) =>
    t.field({
      type: DeviceRef,
      authScopes: { operator: true },
      description,
      errors: { types: [DeviceNotFoundError, InvalidTransitionError, ValidationError] },
      args: {
        deviceId: t.arg.string({ required: true }),
        reason: t.arg.string({ required: true }),
      },
      resolve: (_root, args, context) =>
        context.services.isolation[operation](
          context.em,
          args.deviceId,
          args.reason,
          actorOf(context.viewer),
        ),
    }),
  );
}

// Subscriptions

const DeviceEventFilterInput = builder.inputType('DeviceEventFilter', {
  fields: (t) => ({
    deviceId: t.string(),
    site: t.string({ description: 'A site id' }),
    attestationStatus: t.field({ type: [AttestationStatusEnum], description: 'The status after the change' }),
  }),
});

type DeviceEventFilterArgs = typeof DeviceEventFilterInput.$inferInput;

function matches(event: DeviceChangedEvent, wanted: DeviceEventFilterArgs | null | undefined): boolean {
  if (!wanted) return true;
  if (typeof wanted.deviceId === 'string' && event.deviceId !== wanted.deviceId) return false;
  if (typeof wanted.site === 'string' && event.siteId !== wanted.site) return false;
  if (
    wanted.attestationStatus &&
    !(wanted.attestationStatus as readonly string[]).includes(event.attestationStatus)
  ) {
    return false;
  }
  return true;
}

export const DeviceEventRef = builder.objectRef<DeviceChangedEvent>('DeviceEvent').implement({
  description: "A change of a device's attestation status or lifecycle state, as committed",
  fields: (t) => ({
    deviceId: t.exposeString('deviceId'),
    change: t.exposeString('change', {
      description: 'What happened: enrolled, approved, rejected, revoked, ...',
    }),
    attestationStatus: t.field({
      type: AttestationStatusEnum,
      resolve: (event) => event.attestationStatus as AttestationStatus,
    }),
    enrollmentState: t.field({
      type: EnrollmentStateEnum,
      resolve: (event) => event.enrollmentState as EnrollmentState,
    }),
    previousAttestationStatus: t.field({
      type: AttestationStatusEnum,
      nullable: true,
      resolve: (event) => event.previousAttestationStatus as AttestationStatus | null,
    }),
    site: t.string({ nullable: true, resolve: (event) => event.siteId }),
    occurredAt: t.field({ type: 'DateTime', resolve: (event) => event.occurredAt }),
    actor: t.exposeString('actor'),
    reason: t.exposeString('reason', { nullable: true }),
    device: t.field({
      type: DeviceRef,
      nullable: true,
      description: 'The device as it is now (read when the event is delivered)',
      resolve: (event) => event.deviceId,
    }),
  }),
});

builder.subscriptionField('deviceEvents', (t) =>
  t.field({
    type: feedUnion('DeviceFeedEvent', DeviceEventRef),
    authScopes: { viewer: true },
    description: 'Device changes as they commit, filtered on the server',
    args: { filter: t.arg({ type: DeviceEventFilterInput }) },
    subscribe: (_root, args, context) =>
      subscriberFeed(
        context,
        'deviceEvents',
        'device.changed',
        (event) => matches(event, args.filter),
        // Device changes have no query cursor: after a gap, the subscriber re-reads its devices.
        () => null,
      ),
    resolve: (item, _args, context) => freshItem(item, context),
  }),
);
