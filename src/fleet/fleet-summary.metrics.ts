import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { SITE_LIVENESS } from '../sites/site.service.js';
import type { FleetSummary } from './fleet-summary.service.js';

/**
 * `/metrics` carries the fleet summary's counts, taken from one summary per scrape. When the summary
 * cannot be computed (database down) the gauges keep their last values and the scrape still succeeds,
 * so `fleetproof_component_up` can tell what is wrong.
 */
export function exportFleetGauges(
  metrics: Metrics,
  current: () => Promise<FleetSummary>,
  logger: Logger,
): void {
  metrics.onFleetScrape(async () => {
    let summary: FleetSummary;
    try {
      summary = await current();
    } catch (error) {
      logger.warn({ err: error }, 'fleet summary for /metrics failed; gauges keep their last values');
      return;
    }
    metrics.fleetDevicesByStatus.reset();
    for (const { status, count } of summary.byAttestationStatus)
      metrics.fleetDevicesByStatus.set({ status }, count);
    metrics.fleetDevicesByRiskBand.reset();
    for (const { band, count } of summary.byRiskBand) metrics.fleetDevicesByRiskBand.set({ band }, count);
    metrics.fleetDevicesByType.reset();
    for (const { type, count } of summary.byType) metrics.fleetDevicesByType.set({ type }, count);
    // Reset first: a label set of a site that no longer has devices must not linger.
    metrics.fleetDevicesBySite.reset();
    metrics.siteLiveness.reset();
    for (const site of summary.bySite) {
      metrics.fleetDevicesBySite.set({ site: site.siteId ?? '', state: 'all' }, site.devices);
      metrics.fleetDevicesBySite.set({ site: site.siteId ?? '', state: 'offline' }, site.offline);
      if (site.siteId === null || site.liveness === null) continue;
      for (const liveness of SITE_LIVENESS) {
        metrics.siteLiveness.set({ site: site.siteId, liveness }, site.liveness === liveness ? 1 : 0);
      }
    }
    metrics.fleetOfflineDevices.set(summary.offline);
    metrics.fleetPendingOver24h.set(summary.pendingOver24h);
  });
}
