import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One registry per service instance (not prom-client's global one), so tests can run several
 * instances in one process without "metric already registered" clashes.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fleetproof_' });
  // The fleet gauges are computed on scrape by whoever registers with onFleetScrape (one shared pass).
  let refreshFleet: () => Promise<void> = () => Promise.resolve();
  const collect = () => refreshFleet();
  return {
    registry,
    onFleetScrape(refresh: () => Promise<void>): void {
      refreshFleet = refresh;
    },
    fleetDevicesByStatus: new Gauge({
      name: 'fleetproof_fleet_devices_by_status',
      help: 'Devices by attestation status (rejected devices left out)',
      labelNames: ['status'] as const,
      registers: [registry],
      collect,
    }),
    fleetDevicesByRiskBand: new Gauge({
      name: 'fleetproof_fleet_devices_by_risk_band',
      help: 'Devices by risk band',
      labelNames: ['band'] as const,
      registers: [registry],
      collect,
    }),
    fleetDevicesByType: new Gauge({
      name: 'fleetproof_fleet_devices_by_type',
      help: 'Devices by device type',
      labelNames: ['type'] as const,
      registers: [registry],
      collect,
    }),
    fleetDevicesBySite: new Gauge({
      name: 'fleetproof_fleet_devices_by_site',
      help: 'Devices by site id (site="" for devices without one), and how many of them are offline',
      labelNames: ['site', 'state'] as const,
      registers: [registry],
      collect,
    }),
    fleetOfflineDevices: new Gauge({
      name: 'fleetproof_fleet_offline_devices',
      help: 'Approved devices not heard from within the online window',
      registers: [registry],
      collect,
    }),
    fleetPendingOver24h: new Gauge({
      name: 'fleetproof_fleet_pending_over_24h_devices',
      help: 'PENDING devices registered more than 24 hours ago',
      registers: [registry],
      collect,
    }),
    siteLiveness: new Gauge({
      name: 'fleetproof_site_liveness',
      help: "1 for each defined site's current liveness (LIVE, STALE or DOWN), 0 for the others",
      labelNames: ['site', 'liveness'] as const,
      registers: [registry],
      collect,
    }),
    httpRequests: new Counter({
      name: 'fleetproof_http_requests_total',
      help: 'HTTP requests by route and status class',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
    graphqlOperations: new Counter({
      name: 'fleetproof_graphql_operations_total',
      help: 'GraphQL operations by type and result',
      labelNames: ['type', 'result'] as const,
      registers: [registry],
    }),
    auditEvents: new Counter({
      name: 'fleetproof_audit_events_total',
      help: 'Audit events written, by action',
      labelNames: ['action'] as const,
      registers: [registry],
    }),
    mqttMessages: new Counter({
      name: 'fleetproof_mqtt_messages_total',
      help: 'MQTT messages handled by the service, by topic kind and result',
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }),
    attestationResults: new Counter({
      name: 'fleetproof_attestation_results_total',
      help: 'Decided attestation challenges by outcome and failure reason',
      labelNames: ['outcome', 'reason'] as const,
      registers: [registry],
    }),
    attestationDuplicates: new Counter({
      name: 'fleetproof_attestation_duplicate_deliveries_total',
      help: 'Byte-identical redeliveries of an already processed response (QoS 1), ignored',
      registers: [registry],
    }),
    attestationSecurityEvents: new Counter({
      name: 'fleetproof_attestation_security_events_total',
      help: 'Responses that could not be attributed to a device or were malformed, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    attestationVerifySeconds: new Histogram({
      name: 'fleetproof_attestation_verify_seconds',
      help: 'Time to verify and record one attestation response',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    attestationPending: new Gauge({
      name: 'attestation_pending_total',
      help: "The runbook's gauge: devices awaiting approval (kind=device) and challenges awaiting an answer (kind=challenge)",
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    riskFactors: new Counter({
      name: 'fleetproof_risk_factors_total',
      help: 'Risk factors added to device trails, by kind and severity',
      labelNames: ['kind', 'severity'] as const,
      registers: [registry],
    }),
    riskDuplicateReports: new Counter({
      name: 'fleetproof_risk_duplicate_reports_total',
      help: 'Reports (IOC hits, anomalies) ignored as repeats within the duplicate window, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    riskRescored: new Counter({
      name: 'fleetproof_risk_rescored_total',
      help: 'Devices rescored by the background pass, by cause (policy, decay)',
      labelNames: ['cause'] as const,
      registers: [registry],
    }),
    riskRescoreBacklog: new Gauge({
      name: 'fleetproof_risk_rescore_backlog',
      help: 'Devices still scored by an older policy bundle than their type current one',
      registers: [registry],
    }),
    subscriptionOverflows: new Counter({
      name: 'fleetproof_graphql_subscription_overflows_total',
      help: 'Times a subscriber fell a whole buffer behind and was sent a MissedEvents marker, by subscription',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    subscriptionDroppedEvents: new Counter({
      name: 'fleetproof_graphql_subscription_dropped_events_total',
      help: 'Events dropped for subscribers that fell behind (each gap is marked to them), by subscription',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    subscriptionExecutions: new Gauge({
      name: 'fleetproof_graphql_subscription_executions',
      help: 'Live executions of feed subscriptions, each shared by the subscribers that asked the same, by subscription',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    subscriptionMembers: new Gauge({
      name: 'fleetproof_graphql_subscription_subscribers',
      help: 'Live subscribers of feed subscriptions (graphql-ws and SSE), by subscription',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    componentUp: new Gauge({
      name: 'fleetproof_component_up',
      help: 'Whether a component (database, mqtt, ca) is healthy (1) or not (0)',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
