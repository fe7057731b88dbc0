import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One registry per service instance (not prom-client's global one), so tests can run several
 * instances in one process without "metric already registered" clashes.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fleetproof_' });
  return {
    registry,
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
    componentUp: new Gauge({
      name: 'fleetproof_component_up',
      help: 'Whether a component (database, mqtt, ca) is healthy (1) or not (0)',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
