import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { MAX_GRAPHQL_BODY_BYTES } from './graphql/limits.js';
import { loadAllowList } from './graphql/persisted-operations.js';
import { attachGraphQLWebSocket } from './graphql/ws.js';
import { createGraphQLServer } from './graphql/yoga.js';
import type { EmbeddedBroker, ServiceMqttClient } from './mqtt/index.js';
import { addDeviceRoutes } from './rest/devices.routes.js';
import { addEstRoutes } from './rest/est.routes.js';
import { addHealthRoutes, type HealthCheck } from './rest/health.routes.js';
import { problem, sendProblem } from './rest/problem.js';
import { Router } from './rest/router.js';
import { addSettingsRoutes } from './rest/settings.routes.js';
import { addSiteRoutes } from './rest/sites.routes.js';
import type { Services } from './services.js';

export interface AppDeps {
  config: Config;
  services: Services;
  /** The service's TLS identity, issued by the internal CA. */
  tls: { certificatePem: string; privateKeyPem: string; chainPem: string; trustPems: string[] };
  mqtt: { client: ServiceMqttClient; broker: EmbeddedBroker | undefined };
}

export interface RunningApp {
  readonly urls: { http: string; https: string; graphql: string; est: string; mqtt: string };
  /** The REST and EST routes served (GraphQL's endpoint aside): what schema/openapi.yaml must document. */
  readonly routes: ReadonlyArray<{ method: string; path: string }>;
  stop(): Promise<void>;
}

export interface App {
  start(): Promise<RunningApp>;
}

/** Wires the transports to the services. No side effects until start(). */
export function buildApp(deps: AppDeps): App {
  const { config, services } = deps;
  const logger = services.logger;
  const allowList = loadAllowList(config.graphql.persistedOperations);
  const yoga = createGraphQLServer(services, {
    allowList,
    graphiql: config.graphiql,
    production: config.production,
    graphql: {
      mutationRateLimit: config.graphql.mutationRateLimit,
      subscriptionBuffer: config.graphql.subscriptionBuffer,
    },
  });
  const router = new Router();
  addHealthRoutes(router, healthChecks(deps), services.metrics);
  addDeviceRoutes(router, services);
  addEstRoutes(router, services);
  addSettingsRoutes(router, services);
  addSiteRoutes(router, services);

  const inFlight = new Set<Promise<void>>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const work = handleRequest(req, res).finally(() => inFlight.delete(work));
    inFlight.add(work);
  };

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestIdHeader = req.headers['x-request-id'];
    const requestId =
      typeof requestIdHeader === 'string' && /^[\w.:-]{1,100}$/.test(requestIdHeader)
        ? requestIdHeader
        : randomUUID();
    res.setHeader('x-request-id', requestId);
    const requestLogger = logger.child({ requestId });
    let route = 'unmatched';
    try {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (path === yoga.graphqlEndpoint) {
        route = 'graphql';
        // A body of unknown length could grow without bound while yoga buffers it: require the length.
        if (req.method === 'POST' && req.headers['content-length'] === undefined) {
          sendProblem(res, problem(411, 'length-required', 'GraphQL POST requests must send Content-Length'));
          return;
        }
        // A huge body is refused before anyone buffers or parses it.
        if (Number(req.headers['content-length'] ?? 0) > MAX_GRAPHQL_BODY_BYTES) {
          sendProblem(
            res,
            problem(
              413,
              'payload-too-large',
              `GraphQL requests are limited to ${MAX_GRAPHQL_BODY_BYTES} bytes`,
            ),
          );
          return;
        }
        // Typed as node's void RequestListener, it returns a promise that settles once the response
        // is sent: awaiting it keeps graceful shutdown's in-flight tracking exact.
        await (yoga.requestListener(req, res) as unknown as Promise<void>);
      } else {
        const matched = await router.handle(req, res, requestLogger);
        if (matched) route = matched;
        else sendProblem(res, problem(404, 'not-found', 'Not found', `No resource at ${path}`));
      }
    } catch (error) {
      const correlationId = randomUUID();
      requestLogger.error({ err: error, correlationId }, 'request failed');
      if (!res.headersSent) {
        sendProblem(res, problem(500, 'internal', 'Internal server error', undefined, { correlationId }));
      } else res.destroy();
    } finally {
      services.metrics.httpRequests.inc({ route, status: `${Math.floor(res.statusCode / 100)}xx` });
    }
  }

  return {
    async start() {
      const httpServer = http.createServer(handler);
      const httpsServer = https.createServer(
        {
          key: deps.tls.privateKeyPem,
          cert: deps.tls.certificatePem + deps.tls.chainPem,
          ca: deps.tls.trustPems,
          // Asked for, not required: EST and device routes read the client certificate when there is one.
          requestCert: true,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
        },
        handler,
      );
      const closeWebSocket = attachGraphQLWebSocket([httpServer, httpsServer], yoga, services, allowList);
      await listen(httpServer, config.httpPort, config.httpHost);
      await listen(httpsServer, config.httpsPort, config.httpHost);
      const host = config.httpHost.includes(':') ? `[${config.httpHost}]` : config.httpHost;
      const httpUrl = `http://${host}:${(httpServer.address() as AddressInfo).port}`;
      const httpsUrl = `https://${host}:${(httpsServer.address() as AddressInfo).port}`;
      const urls = {
        http: httpUrl,
        https: httpsUrl,
        graphql: `${httpUrl}/graphql`,
        est: `${httpsUrl}/.well-known/est`,
        mqtt: deps.mqtt.broker ? `mqtts://${host}:${deps.mqtt.broker.port}` : (config.mqttUrl ?? ''),
      };
      return {
        urls,
        routes: router.routes(),
        async stop() {
          // Stop accepting, let in-flight requests finish, then close the rest in dependency order.
          const closed = Promise.all([close(httpServer), close(httpsServer)]);
          httpServer.closeIdleConnections();
          httpsServer.closeIdleConnections();
          await closeWebSocket();
          await Promise.allSettled([...inFlight]);
          httpServer.closeAllConnections();
          httpsServer.closeAllConnections();
          await closed;
          await deps.mqtt.client.close();
          await deps.mqtt.broker?.close();
        },
      };
    },
  };
}

function healthChecks(deps: AppDeps): HealthCheck[] {
  const { services } = deps;
  return [
    {
      name: 'database',
      async check() {
        const started = performance.now();
        await services.database.ping();
        return {
          status: 'up',
          detail: {
            kind: services.database.kind,
            latencyMs: Math.round((performance.now() - started) * 10) / 10,
          },
        };
      },
    },
    {
      name: 'mqtt',
      check() {
        const state = deps.mqtt.client.state;
        return Promise.resolve({
          status: state.status === 'connected' ? 'up' : 'down',
          detail: {
            broker: deps.mqtt.broker ? 'embedded' : 'external',
            client: state.status,
            since: state.since.toISOString(),
            ...(state.lastError ? { lastError: state.lastError } : {}),
            ...(deps.mqtt.broker ? { connectedClients: deps.mqtt.broker.connectedClients() } : {}),
          },
        });
      },
    },
    {
      name: 'ca',
      check() {
        const now = services.clock.now();
        const notAfter = new Date(services.ca.issuingCertificate.validTo);
        const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
        return Promise.resolve({
          status: daysLeft >= 0 ? 'up' : 'down',
          detail: {
            rootFingerprintSha256: services.ca.rootFingerprintSha256,
            issuingNotAfter: notAfter.toISOString(),
            issuingDaysLeft: daysLeft,
          },
        });
      },
    },
    {
      // A stale bundle is shown, not failed on: scoring goes on with it and says so in the trail.
      name: 'policy',
      async check() {
        const bundles = await services.policies.currentBundles(services.database.orm.em.fork());
        const byType = Object.fromEntries(
          [...bundles].map(([type, bundle]) => [
            type,
            {
              version: bundle.version,
              publishedAt: bundle.publishedAt,
              stale: services.policies.isStale(bundle),
            },
          ]),
        );
        return {
          status: 'up',
          detail: {
            bundles: byType,
            stale: Object.entries(byType)
              .filter(([, bundle]) => bundle.stale)
              .map(([type]) => type),
          },
        };
      },
    },
  ];
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
