import type { FleetSummary, SiteCount } from '../../fleet/fleet-summary.service.js';
import { sameSummary } from '../../fleet/fleet-summary.service.js';
import type { AttestationStatus, DeviceType, RiskBand } from '../../devices/device.entity.js';
import { filter, pipe } from 'graphql-yoga';
import { builder } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { throttledSnapshots } from '../throttled-feed.js';
import { AttestationStatusEnum, DeviceTypeEnum, RiskBandEnum } from './devices.js';
import { SiteLivenessEnum, SiteRef } from './sites.js';

/** The bound: however fast the fleet changes, a subscriber gets at most one summary a second. */
const SUMMARY_INTERVAL_MS = 1_000;
/** Devices go offline and sites STALE with time alone, without an event: look again this often. */
const SUMMARY_RECHECK_MS = 10_000;

const StatusCountRef = builder
  .objectRef<{ status: AttestationStatus; count: number }>('AttestationStatusCount')
  .implement({
    fields: (t) => ({
      status: t.field({ type: AttestationStatusEnum, resolve: (row) => row.status }),
      count: t.exposeInt('count'),
    }),
  });

const BandCountRef = builder.objectRef<{ band: RiskBand; count: number }>('RiskBandCount').implement({
  fields: (t) => ({
    band: t.field({ type: RiskBandEnum, resolve: (row) => row.band }),
    count: t.exposeInt('count'),
  }),
});

const TypeCountRef = builder.objectRef<{ type: DeviceType; count: number }>('DeviceTypeCount').implement({
  fields: (t) => ({
    type: t.field({ type: DeviceTypeEnum, resolve: (row) => row.type }),
    count: t.exposeInt('count'),
  }),
});

const SiteCountRef = builder.objectRef<SiteCount>('SiteDeviceCount').implement({
  fields: (t) => ({
    siteId: t.exposeString('siteId', { nullable: true, description: 'Null: devices without a site' }),
    defined: t.exposeBoolean('defined', {
      description: 'False for a site id devices carry that no site definition has (and for no site)',
    }),
    site: t.field({ type: SiteRef, nullable: true, resolve: (row) => (row.defined ? row.siteId : null) }),
    liveness: t.field({ type: SiteLivenessEnum, nullable: true, resolve: (row) => row.liveness }),
    devices: t.exposeInt('devices'),
    offline: t.exposeInt('offline', { description: 'Approved devices of the site not online' }),
  }),
});

const FleetSummaryRef = builder.objectRef<FleetSummary>('FleetSummary').implement({
  description: 'Counts over the fleet (rejected devices left out), from a few aggregate statements',
  fields: (t) => ({
    computedAt: t.field({ type: 'DateTime', resolve: (summary) => summary.computedAt }),
    devices: t.exposeInt('devices'),
    offline: t.exposeInt('offline', {
      description: 'Approved devices not heard from within the online window',
    }),
    pendingOver24h: t.exposeInt('pendingOver24h', {
      description: 'PENDING devices registered more than 24 hours ago',
    }),
    byAttestationStatus: t.field({
      type: [StatusCountRef],
      resolve: (summary) => summary.byAttestationStatus,
    }),
    byRiskBand: t.field({ type: [BandCountRef], resolve: (summary) => summary.byRiskBand }),
    byType: t.field({ type: [TypeCountRef], resolve: (summary) => summary.byType }),
    bySite: t.field({
      type: [SiteCountRef],
      description: 'Every defined site, then site ids no site definition has, then devices without a site',
      resolve: (summary) => summary.bySite,
    }),
  }),
});

const summaryNow = (context: GraphQLContext, notBefore?: number) =>
  context.services.fleetSummary.current(context.services.database.orm.em.fork(), notBefore);

builder.queryField('fleetSummary', (t) =>
  t.field({
    type: FleetSummaryRef,
    authScopes: { viewer: true },
    resolve: (_root, _args, context) => summaryNow(context),
  }),
);

builder.subscriptionField('fleetSummary', (t) =>
  t.field({
    type: FleetSummaryRef,
    authScopes: { viewer: true },
    description: `The summary at once, then after changes: at most one message every ${SUMMARY_INTERVAL_MS / 1000} s however fast the fleet changes, and one after the last change of a burst (so the last message is exact). A subscriber that does not read is not queued for: it gets the current summary when it reads again.`,
    subscribe: (_root, _args, context) => {
      const { pubsub } = context.services;
      return throttledSnapshots({
        changes: [
          pubsub.subscribe('device.changed'),
          pubsub.subscribe('attestation.decided'),
          pubsub.subscribe('device.presence'),
          pubsub.subscribe('site.changed'),
          // Registrations and imports publish no device event; their audit entries say the inventory moved.
          pipe(pubsub.subscribe('audit.recorded'), filter(isInventoryChange)),
        ],
        snapshot: (notBefore) => summaryNow(context, notBefore),
        same: sameSummary,
        intervalMs: SUMMARY_INTERVAL_MS,
        recheckMs: SUMMARY_RECHECK_MS,
      });
    },
    resolve: (summary) => summary,
  }),
);

function isInventoryChange(event: { action: string }): boolean {
  return event.action.startsWith('device.') || event.action === 'inventory.imported';
}
