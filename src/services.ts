import type { AttestationSettingsService } from './attestation/attestation-settings.service.js';
import type { AttestationService, LateBoundChallengeTransport } from './attestation/attestation.service.js';
import type { AuditService } from './audit/audit.service.js';
import type { TokenService } from './auth/token.service.js';
import type { CaseService } from './cases/case.service.js';
import type { CrlService } from './certificates/crl.service.js';
import type { DevicePresence } from './devices/device-presence.js';
import type { InventoryService } from './devices/inventory.service.js';
import type { IsolatedDeviceSet } from './devices/isolated-device-set.js';
import type { DeviceIsolationService } from './devices/isolation.service.js';
import type { DeviceLifecycleService } from './enrollment/device-lifecycle.service.js';
import type { EnrollmentGroupService } from './enrollment/enrollment-group.service.js';
import type { EnrollmentService } from './enrollment/enrollment.service.js';
import type { EnrollmentSettings } from './enrollment/enrollment.settings.js';
import type { OttService } from './enrollment/ott.service.js';
import type { PolicyBundleService } from './policy/policy-bundle.service.js';
import type { RiskService } from './risk/risk.service.js';
import type { SiteService } from './sites/site.service.js';
import type { FleetSummaryService } from './fleet/fleet-summary.service.js';
import type { IdempotencyStore } from './idempotency/idempotency.store.js';
import type { Database } from './db/database.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import type { CertificateAuthority } from './pki/index.js';
import type { RateLimiter } from './ratelimit/rate-limiter.js';
import type { Clock } from './shared/clock.js';
import type { EventBus } from './shared/event-bus.js';
import type { RedisEventRelay } from './shared/redis-event-relay.js';
import type { AppEvents } from './shared/events.js';
import type { TransactionRunner } from './shared/transaction.js';

export type AppPubSub = EventBus<AppEvents>;

/** The domain services and ports, built once in main.ts and handed to every adapter. */
export interface Services {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly database: Database;
  readonly ca: CertificateAuthority;
  readonly pubsub: AppPubSub;
  /** Carries the bus's events to the other instances (REDIS_URL); none for a single instance. */
  readonly eventRelay: RedisEventRelay | undefined;
  readonly transactions: TransactionRunner;
  readonly rateLimiter: RateLimiter;
  readonly idempotency: IdempotencyStore;
  readonly audit: AuditService;
  readonly tokens: TokenService;
  readonly inventory: InventoryService;
  readonly otts: OttService;
  readonly enrollment: EnrollmentService;
  readonly enrollmentGroups: EnrollmentGroupService;
  readonly lifecycle: DeviceLifecycleService;
  readonly isolation: DeviceIsolationService;
  /** Who is isolated now, for the brokers' ACL and the MQTT handlers (kept current by main.ts). */
  readonly isolatedDevices: IsolatedDeviceSet;
  readonly crl: CrlService;
  readonly cases: CaseService;
  readonly enrollmentSettings: EnrollmentSettings;
  readonly attestationSettings: AttestationSettingsService;
  readonly attestation: AttestationService;
  readonly challengeTransport: LateBoundChallengeTransport;
  readonly policies: PolicyBundleService;
  readonly risk: RiskService;
  readonly sites: SiteService;
  readonly presence: DevicePresence;
  readonly fleetSummary: FleetSummaryService;
  readonly serviceInfo: { version: string; database: string; rootCaFingerprint: string };
}
