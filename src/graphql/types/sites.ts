import { actorOf } from '../../auth/token.service.js';
import type { Device } from '../../devices/device.entity.js';
import { HEARTBEAT_CHANNELS, type Site } from '../../sites/site.entity.js';
import { SiteNotFoundError } from '../../sites/site.errors.js';
import { SITE_LIVENESS, type OfflineCause } from '../../sites/site.service.js';
import { ConflictError, ValidationError } from '../../shared/errors.js';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { PAGE_SIZE, decodeCursor, encodeCursor, keysetConnection } from '../cursor.js';
import { DeviceRef } from './devices.js';
import { ErrorInterface } from './errors.js';

const SITE_CURSOR = 'site';
const SITE_DEVICE_CURSOR = 'site-device';

export const SiteLivenessEnum = builder.enumType('SiteLiveness', {
  values: SITE_LIVENESS,
  description: 'From the age of the last controller heartbeat (thresholds in the service configuration)',
});
const OfflineCauseEnum = builder.enumType('OfflineCause', {
  values: {
    SITE_DOWN: {
      description: "The device's site controller is DOWN and fell silent no later than the device",
    },
    SITE_STALE: {
      description: "The device's site controller is STALE and fell silent no later than the device",
    },
    DEVICE_SILENT: {
      description: 'The device alone stopped: its site controller is live, or it has no site',
    },
    NEVER_SEEN: { description: 'The device never sent an MQTT message' },
  } satisfies Record<OfflineCause, unknown>,
});
const HeartbeatChannelEnum = builder.enumType('HeartbeatChannel', {
  values: HEARTBEAT_CHANNELS.map((channel) => channel.toUpperCase()),
});

builder.objectType(SiteNotFoundError, {
  name: 'SiteNotFound',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof SiteNotFoundError,
  fields: (t) => ({ siteId: t.exposeString('siteId') }),
});

/** Loaded by site id (the key devices carry), so `Device.site` over a page of devices is one query. */
export const SiteRef = builder.loadableNodeRef('Site', {
  id: { resolve: (site) => site.id },
  load: (ids: string[], context: GraphQLContext) => context.services.sites.byIds(context.em, ids),
  sort: (site) => site.id,
});

const siteOf = (device: Device, context: GraphQLContext): Promise<Site | null> =>
  device.siteId === null ? Promise.resolve(null) : SiteRef.getDataloader(context).load(device.siteId);

SiteRef.implement({
  description: 'A site and its controller, whose heartbeats say whether the site is reachable',
  fields: (t) => ({
    siteId: t.exposeString('id', { description: 'The site id devices and topics carry' }),
    name: t.exposeString('name'),
    controllerId: t.exposeString('controllerId', {
      nullable: true,
      description: 'Device id (certificate CN) of the controller allowed to publish the MQTT heartbeat',
    }),
    liveness: t.field({
      type: SiteLivenessEnum,
      description: 'DOWN also when no heartbeat was ever received',
      resolve: (site, _args, context) => context.services.sites.liveness(site),
    }),
    lastHeartbeatAt: t.field({ type: 'DateTime', nullable: true, resolve: (site) => site.lastHeartbeatAt }),
    lastHeartbeatChannel: t.field({
      type: HeartbeatChannelEnum,
      nullable: true,
      resolve: (site) => site.lastHeartbeatChannel?.toUpperCase() ?? null,
    }),
    createdAt: t.field({ type: 'DateTime', resolve: (site) => site.createdAt }),
    updatedAt: t.field({ type: 'DateTime', resolve: (site) => site.updatedAt }),
    devices: t.connection(
      {
        type: DeviceRef,
        description: `The site's devices in device-id order; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
        args: { online: t.arg.boolean({ description: 'Only devices online (true) or offline (false)' }) },
        resolve: async (site, args, context) => {
          const { inventory, sites } = context.services;
          const filter = {
            siteId: site.id,
            online:
              typeof args.online === 'boolean'
                ? { value: args.online, cutoff: sites.onlineCutoff() }
                : undefined,
          };
          const key = (cursor: string | undefined) =>
            cursor === undefined
              ? undefined
              : { value: null, deviceId: decodeCursor(SITE_DEVICE_CURSOR, cursor) };
          const connection = await keysetConnection(
            args,
            (device: Device) => encodeCursor(SITE_DEVICE_CURSOR, device.deviceId),
            ({ before, after, limit, inverted }) =>
              inventory.list(context.em, filter, {
                order: { field: 'DEVICE_ID', ascending: true },
                after: key(after),
                before: key(before),
                limit,
                inverted,
              }),
          );
          return { ...connection, totalCount: () => inventory.count(context.em, filter) };
        },
      },
      {
        name: 'SiteDeviceConnection',
        fields: (tc) => ({
          totalCount: tc.int({
            description: 'Devices of the site (matching `online` if given), across all pages',
            resolve: (connection) => connection.totalCount(),
          }),
        }),
      },
      { name: 'SiteDeviceEdge' },
    ),
  }),
});

builder.objectFields(DeviceRef, (t) => ({
  siteId: t.exposeString('siteId', {
    nullable: true,
    description: 'The site id the inventory gives; `site` is null while no such site is defined',
  }),
  site: t.field({
    type: SiteRef,
    nullable: true,
    resolve: (device) => device.siteId,
  }),
  lastSeenAt: t.field({
    type: 'DateTime',
    nullable: true,
    description: 'When the device last sent an MQTT message of its own (written at most once a second or so)',
    resolve: (device) => device.lastSeenAt,
  }),
  online: t.boolean({
    description: 'Heard from within the online window (service configuration)',
    resolve: (device, _args, context) => context.services.sites.isOnline(device),
  }),
  offlineCause: t.field({
    type: OfflineCauseEnum,
    nullable: true,
    description: 'Null while online; otherwise why the device is silent, as far as the service can tell',
    resolve: async (device, _args, context) =>
      context.services.sites.isOnline(device)
        ? null
        : context.services.sites.offlineCause(device, await siteOf(device, context)),
  }),
}));

// Queries

builder.queryField('site', (t) =>
  t.field({
    type: SiteRef,
    nullable: true,
    authScopes: { viewer: true },
    description: 'A site by its site id; null when none is defined',
    args: { id: t.arg.string({ required: true }) },
    resolve: (_root, args) => args.id,
  }),
);

builder.queryField('sites', (t) =>
  t.connection(
    {
      type: SiteRef,
      authScopes: { viewer: true },
      description: `Sites in id order; ${PAGE_SIZE.default} per page unless asked, at most ${PAGE_SIZE.max}`,
      resolve: async (_root, args, context) => {
        const connection = await keysetConnection(
          args,
          (site: Site) => encodeCursor(SITE_CURSOR, site.id),
          ({ before, after, limit, inverted }) =>
            context.services.sites.list(context.em, {
              after: after === undefined ? undefined : decodeCursor(SITE_CURSOR, after),
              before: before === undefined ? undefined : decodeCursor(SITE_CURSOR, before),
              limit,
              reversed: inverted,
            }),
        );
        return { ...connection, totalCount: () => context.services.sites.count(context.em) };
      },
    },
    {
      name: 'SiteConnection',
      fields: (tc) => ({
        totalCount: tc.int({ description: 'Every site', resolve: (connection) => connection.totalCount() }),
      }),
    },
    { name: 'SiteEdge' },
  ),
);

// Mutations

const CreateSiteInput = builder.inputType('CreateSiteInput', {
  fields: (t) => ({
    id: t.string({ required: true, description: 'The site id devices carry; an MQTT topic level' }),
    name: t.string({ required: true }),
    controllerId: t.string({ description: 'Device id of the site controller (MQTT heartbeats)' }),
  }),
});

const UpdateSiteInput = builder.inputType('UpdateSiteInput', {
  fields: (t) => ({
    id: t.string({ required: true }),
    name: t.string({ description: 'Unchanged when not given' }),
    controllerId: t.string({ description: 'Unchanged when not given; null removes the controller' }),
  }),
});

builder.mutationField('createSite', (t) =>
  t.field({
    type: SiteRef,
    authScopes: { facilities: true },
    description: 'Defines a site; devices already naming its id belong to it from now on',
    errors: { types: [ValidationError, ConflictError] },
    args: { input: t.arg({ type: CreateSiteInput, required: true }) },
    resolve: (_root, args, context) =>
      context.services.sites.create(context.em, args.input, actorOf(context.viewer)),
  }),
);

builder.mutationField('updateSite', (t) =>
  t.field({
    type: SiteRef,
    authScopes: { facilities: true },
    description: "Renames a site or changes its controller (who may publish the site's MQTT heartbeat)",
    errors: { types: [SiteNotFoundError, ValidationError] },
    args: { input: t.arg({ type: UpdateSiteInput, required: true }) },
    resolve: (_root, args, context) =>
      context.services.sites.update(
        context.em,
        args.input.id,
        { name: args.input.name, controllerId: args.input.controllerId },
        actorOf(context.viewer),
      ),
  }),
);
