import 'reflect-metadata';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { buildApp, type RunningApp } from './app.js';
import { AttestationSettingsService } from './attestation/attestation-settings.service.js';
import { startAttestationScheduler, type AttestationScheduler } from './attestation/attestation.scheduler.js';
import {
  AttestationService,
  LateBoundChallengeTransport,
  type ChallengeTransport,
} from './attestation/attestation.service.js';
import { DiceEvidenceVerifier } from './attestation/dice-evidence.verifier.js';
import { AuditService } from './audit/audit.service.js';
import { TokenService } from './auth/token.service.js';
import { CaseService } from './cases/case.service.js';
import { CrlService } from './certificates/crl.service.js';
import { DevicePresence } from './devices/device-presence.js';
import { InventoryService } from './devices/inventory.service.js';
import { IsolatedDeviceSet, isIsolationChange } from './devices/isolated-device-set.js';
import { DeviceIsolationService } from './devices/isolation.service.js';
import { DeviceLifecycleService } from './enrollment/device-lifecycle.service.js';
import { EnrollmentGroupService } from './enrollment/enrollment-group.service.js';
import { EnrollmentService } from './enrollment/enrollment.service.js';
import { DEFAULT_ENROLLMENT_SETTINGS, type EnrollmentSettings } from './enrollment/enrollment.settings.js';
import { OttService } from './enrollment/ott.service.js';
import { IdempotencyStore } from './idempotency/idempotency.store.js';
import { RateLimiter } from './ratelimit/rate-limiter.js';
import { PolicyBundleService } from './policy/policy-bundle.service.js';
import { DEFAULT_RISK_SETTINGS, RiskService } from './risk/risk.service.js';
import { startRiskScheduler } from './risk/risk.scheduler.js';
import { createEventBus } from './shared/event-bus.js';
import { connectRedisEventRelay, type RedisEventRelay } from './shared/redis-event-relay.js';
import type { AppEvents } from './shared/events.js';
import { startPeriodicTask, type PeriodicTask } from './shared/periodic-task.js';
import { SiteService } from './sites/site.service.js';
import { FleetSummaryService } from './fleet/fleet-summary.service.js';
import { exportFleetGauges } from './fleet/fleet-summary.metrics.js';
import { handleSiteHeartbeats } from './mqtt/site-heartbeat.handler.js';
import { trackDevicePresence } from './mqtt/presence.handler.js';
import { handleTelemetry } from './mqtt/telemetry.handler.js';
import type { Config } from './config.js';
import { migrate, openDatabase } from './db/database.js';
import { createServiceMqttClient, startEmbeddedBroker, type EmbeddedBroker } from './mqtt/index.js';
import type { Logger } from './observability/logger.js';
import { createMetrics } from './observability/metrics.js';
import { loadOrCreateCertificateAuthority } from './pki/index.js';
import { isCertificateBarred } from './certificates/revocation-check.js';
import { handleAttestationResponses, mqttChallengeTransport } from './mqtt/attestation.handler.js';
import { handleEnrollmentRequests } from './mqtt/enroll.handler.js';
import { isolationAcl } from './mqtt/isolation.policy.js';
import { DomainError } from './shared/errors.js';
import type { AppPubSub, Services } from './services.js';
import { systemClock, type Clock } from './shared/clock.js';
import { TransactionRunner } from './shared/transaction.js';
import { VERSION } from './version.js';

export interface Running {
  readonly app: RunningApp;
  readonly services: Services;
  readonly challengeTransport: ChallengeTransport;
  readonly scheduler: AttestationScheduler;
  readonly riskScheduler: PeriodicTask;
  stop(): Promise<void>;
}

/** Opens the database (migrating it) and builds the domain services; no listeners. */
export async function createServices(
  config: Config,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<Services> {
  const metrics = createMetrics();
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  let eventRelay: RedisEventRelay | undefined;
  try {
    const applied = await migrate(database.orm);
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    const ca = await loadOrCreateCertificateAuthority({
      dir: path.join(config.dataDir, 'pki'),
      ...(config.caPassphrase ? { passphrase: config.caPassphrase } : {}),
      logger,
      crlUrl: `https://${config.publicHosts[0] ?? '127.0.0.1'}:${config.httpsPort}/api/v1/cps/crl`,
    });
    eventRelay = config.redisUrl ? await connectRedisEventRelay(config.redisUrl, logger) : undefined;
    const pubsub: AppPubSub = createEventBus<AppEvents>(eventRelay);
    const transactions = new TransactionRunner(pubsub);
    const audit = new AuditService(clock, (action) => metrics.auditEvents.inc({ action }));
    const enrollmentSettings: EnrollmentSettings = {
      ...DEFAULT_ENROLLMENT_SETTINGS,
      certificateValidityDays: config.enrollment.certificateValidityDays,
      requireChannelBinding: config.enrollment.requireChannelBinding,
      ottRateLimit: {
        ...DEFAULT_ENROLLMENT_SETTINGS.ottRateLimit,
        perDevice: config.enrollment.ottRatePerDevice,
        perAddress: config.enrollment.ottRatePerAddress,
      },
    };
    const cases = new CaseService(audit, transactions, clock);
    const crl = new CrlService(ca, clock);
    const enrollmentGroups = new EnrollmentGroupService(audit, transactions, clock);
    const attestationSettings = new AttestationSettingsService(audit, transactions, clock);
    const policies = new PolicyBundleService(audit, transactions, clock);
    const rateLimiter = new RateLimiter(clock);
    const sites = new SiteService(audit, transactions, clock, config.liveness);
    const fleetSummary = new FleetSummaryService(sites, clock);
    exportFleetGauges(metrics, () => fleetSummary.current(database.orm.em.fork()), logger);
    return {
      clock,
      logger,
      metrics,
      database,
      ca,
      pubsub,
      eventRelay,
      transactions,
      rateLimiter,
      idempotency: new IdempotencyStore(clock, config.graphql.idempotencyKeyTtlSeconds),
      audit,
      tokens: new TokenService(audit, transactions, clock),
      inventory: new InventoryService(audit, transactions, clock),
      otts: new OttService(audit, transactions, rateLimiter, clock, enrollmentSettings),
      enrollment: new EnrollmentService(ca, audit, transactions, clock, enrollmentSettings, enrollmentGroups),
      enrollmentGroups,
      lifecycle: new DeviceLifecycleService(audit, cases, crl, transactions, clock),
      isolation: new DeviceIsolationService(audit, cases, transactions, clock),
      isolatedDevices: new IsolatedDeviceSet(),
      crl,
      cases,
      enrollmentSettings,
      attestationSettings,
      challengeTransport: new LateBoundChallengeTransport(),
      attestation: new AttestationService(
        attestationSettings,
        [new DiceEvidenceVerifier(ca)],
        audit,
        cases,
        policies,
        transactions,
        clock,
        metrics,
      ),
      policies,
      risk: new RiskService(policies, cases, audit, transactions, new RateLimiter(clock), clock, metrics, {
        ...DEFAULT_RISK_SETTINGS,
        duplicateWindowMs: config.risk.duplicateWindowMs,
      }),
      sites,
      fleetSummary,
      presence: new DevicePresence(clock, pubsub, config.liveness.deviceOnlineWindowMs),
      serviceInfo: { version: VERSION, database: database.kind, rootCaFingerprint: ca.rootFingerprintSha256 },
    };
  } catch (error) {
    await eventRelay?.close();
    await database.close();
    throw error;
  }
}

/** The composition root: config -> database -> CA -> services -> broker -> listeners. */
export async function startService(
  config: Config,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<Running> {
  const services = await createServices(config, logger, clock);
  let broker: EmbeddedBroker | undefined;
  try {
    const server = await services.ca.issueServerCertificate({
      commonName: config.publicHosts[0] ?? 'localhost',
      dnsNames: config.publicHosts.filter((host) => !isIpAddress(host)),
      ipAddresses: config.publicHosts.filter(isIpAddress),
    });
    const serviceClient = await services.ca.issueServiceClientCertificate('fleetproof-service');
    const trustPems = [services.ca.rootPem, services.ca.issuingPem];
    const isolationResync = await followIsolation(services);
    if (!config.mqttUrl) {
      broker = await startEmbeddedBroker({
        host: config.httpHost,
        port: config.mqttPort,
        tls: {
          keyPem: server.privateKeyPem,
          certPem: server.certificatePem + server.chainPem,
          caPems: trustPems,
          serviceIssuerPems: [services.ca.issuingPem],
        },
        isSiteController: (deviceId, siteId) =>
          services.sites.isController(services.database.orm.em.fork(), deviceId, siteId),
        isCertificateRevoked: ({ fingerprintSha256 }) =>
          isCertificateBarred(services.database.orm.em.fork(), fingerprintSha256),
        authenticateManufacturerChain: async (chain) => {
          try {
            return (await services.enrollmentGroups.match(services.database.orm.em.fork(), chain))
              .leafCommonName;
          } catch (error) {
            if (error instanceof DomainError) return undefined;
            throw error;
          }
        },
        canPublish: isolationAcl(services.isolatedDevices),
        logger: logger.child({ component: 'mqtt-broker' }),
      });
      disconnectRevokedDevices(services, broker);
    }
    const extraCa = config.mqttCaFile ? [await readFile(config.mqttCaFile, 'utf8')] : [];
    const mqttUrl = config.mqttUrl ?? `mqtts://127.0.0.1:${broker!.port}`;
    const mqttClient = createServiceMqttClient({
      url: mqttUrl,
      // mqtt.js turns an mqtt:// URL into mqtts:// when given a client certificate, and a plain
      // broker then drops the TLS handshake as a protocol error: certificates only for mqtts://.
      ...(mqttUrl.startsWith('mqtts:')
        ? {
            tls: {
              keyPem: serviceClient.privateKeyPem,
              certPem: serviceClient.certificatePem + serviceClient.chainPem,
              caPems: [...trustPems, ...extraCa],
            },
          }
        : {}),
      clientId: `fleetproof-service-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      logger: logger.child({ component: 'mqtt-client' }),
      ...(broker ? { protocolVersion: 4 as const } : {}),
    });
    await handleEnrollmentRequests(mqttClient, services);
    await handleAttestationResponses(mqttClient, services);
    await handleTelemetry(mqttClient, services);
    await handleSiteHeartbeats(mqttClient, services);
    await trackDevicePresence(mqttClient, services);
    const presenceTask = startPeriodicTask({
      name: 'device presence',
      intervalMs: config.liveness.presenceFlushMs,
      logger: logger.child({ component: 'device-presence' }),
      pass: () => services.presence.flush(services.database.orm.em.fork()),
    });
    services.challengeTransport.connect(mqttChallengeTransport(mqttClient));
    const challengeTransport = services.challengeTransport;
    const scheduler = startAttestationScheduler({
      service: services.attestation,
      transport: challengeTransport,
      entityManager: () => services.database.orm.em.fork(),
      logger: logger.child({ component: 'attestation-scheduler' }),
      metrics: services.metrics,
      intervalMs: config.schedulerTickMs,
    });
    const riskScheduler = startRiskScheduler({
      service: services.risk,
      entityManager: () => services.database.orm.em.fork(),
      logger: logger.child({ component: 'risk-scheduler' }),
      metrics: services.metrics,
      intervalMs: config.risk.tickMs,
    });
    feedRiskFromEvents(services, riskScheduler);
    const app = await buildApp({
      config,
      services,
      tls: {
        certificatePem: server.certificatePem,
        privateKeyPem: server.privateKeyPem,
        chainPem: server.chainPem,
        trustPems,
      },
      mqtt: { client: mqttClient, broker },
    }).start();
    return {
      app,
      services,
      challengeTransport,
      scheduler,
      riskScheduler,
      async stop() {
        await scheduler.stop();
        await riskScheduler.stop();
        await app.stop();
        await presenceTask.stop();
        await isolationResync.stop();
        // What arrived since the last pass; MQTT is closed, so nothing more can be noted.
        await presenceTask.tick();
        // Responses received before the MQTT client closed are decided before the database closes.
        await services.attestation.drain();
        await closeConnections(services);
      },
    };
  } catch (error) {
    await broker?.close();
    await closeConnections(services);
    throw error;
  }
}

/** Closes what createServices opened, last at a stop: events may be sent while work drains. */
export async function closeConnections(services: Services): Promise<void> {
  await services.eventRelay?.close();
  await services.database.close();
}

/**
 * Attestation outcomes reach the score after their own commit; a new bundle starts its rescoring at
 * once instead of at the next tick. What this instance misses (a crash in between) the periodic pass
 * catches up for state factors; the risk note says what remains.
 */
const RISK_UPDATE_CONCURRENCY = 8;

function feedRiskFromEvents(services: Services, riskScheduler: PeriodicTask): void {
  const log = services.logger.child({ component: 'risk' });
  void (async () => {
    const inFlight = new Set<Promise<void>>();
    // Once per outcome: the instance that decided it scores it.
    for await (const event of services.pubsub.subscribeOwn('attestation.decided')) {
      // Row locks order updates per device; across devices a few run at once so a burst drains.
      if (inFlight.size >= RISK_UPDATE_CONCURRENCY) await Promise.race(inFlight);
      const update = services.risk
        .recordAttestation(services.database.orm.em.fork(), event)
        .catch((error: unknown) =>
          log.error({ err: error, deviceId: event.deviceId }, 'risk update after attestation failed'),
        )
        .finally(() => inFlight.delete(update));
      inFlight.add(update);
    }
  })();
  void (async () => {
    for await (const event of services.pubsub.subscribe('policy.published')) {
      log.info(event, 'policy bundle published: rescoring its devices');
      void riskScheduler.tick();
    }
  })();
}

/** How often the isolated-device set is read afresh whatever the bus delivered. */
const ISOLATION_RESYNC_MS = 5_000;

/**
 * Keeps the isolated-device set current: read before the broker accepts anyone, again after every
 * isolation change this instance hears of, and every few seconds, so an isolation made through
 * another instance reaches this broker within seconds even without a shared bus, or when it lost
 * the event.
 */
async function followIsolation(services: Services): Promise<PeriodicTask> {
  const log = services.logger.child({ component: 'isolation' });
  const reload = () => services.isolatedDevices.reload(services.database.orm.em.fork());
  void (async () => {
    for await (const event of services.pubsub.subscribe('device.changed')) {
      if (!isIsolationChange(event.change)) continue;
      reload()
        .then(() => log.info({ deviceId: event.deviceId, change: event.change }, 'isolated devices reloaded'))
        .catch((error: unknown) => log.error({ err: error }, 'reloading the isolated devices failed'));
    }
  })();
  await reload();
  log.info({ isolated: services.isolatedDevices.size }, 'isolated devices loaded');
  return startPeriodicTask({
    name: 'isolation resync',
    intervalMs: ISOLATION_RESYNC_MS,
    logger: log,
    pass: reload,
  });
}

/** A revoked device loses its live MQTT session at once, not only at its next connect. */
function disconnectRevokedDevices(services: Services, broker: EmbeddedBroker): void {
  void (async () => {
    for await (const event of services.pubsub.subscribe('device.revoked')) {
      if (broker.disconnect(event.deviceId)) {
        services.logger.info({ deviceId: event.deviceId }, 'revoked device disconnected from the broker');
      }
    }
  })();
}

function isIpAddress(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}
