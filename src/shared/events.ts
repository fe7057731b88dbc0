/**
 * Application events, published after the transaction that caused them commits. The map is the one
 * contract between domains (publishers) and transports (GraphQL subscriptions). The bus behind it is
 * in-process today and must be swappable for Redis when several instances run, so payloads are plain
 * JSON-serialisable objects, never entities.
 */
export interface AppEvents {
  'audit.recorded': AuditRecordedEvent;
  /** A device's status or lifecycle state changed. */
  'device.changed': DeviceChangedEvent;
  /** An attestation challenge was decided (PASS, FAIL or TIMEOUT). */
  'attestation.decided': AttestationDecidedEvent;
  /** A device's certificates were revoked: brokers drop its connections. */
  'device.revoked': { deviceId: string; serials: string[] };
  /** A new policy bundle version for a device type: its devices are rescored in the background. */
  'policy.published': { deviceType: string; version: number };
  /** An entry was added to a case's timeline (a note, a status change, evidence, ...). */
  'case.event-recorded': CaseEventRecordedEvent;
  /** A site was created or changed, or its controller came back (a heartbeat after STALE/DOWN). */
  'site.changed': { siteId: string; change: 'created' | 'updated' | 'live' };
  /** Devices that were offline (or never seen) sent a message again; written with their last-seen time. */
  'device.presence': { deviceIds: string[]; at: string };
}

export interface CaseEventRecordedEvent {
  seq: string;
  caseRef: string;
  caseNumber: number;
  kind: string;
  actor: string;
  at: string;
  body: string | null;
  payload: Record<string, unknown>;
  /** The case as this entry left it, for subscribers' filters. */
  caseStatus: string;
  severity: string;
  source: string;
  deviceIds: string[];
}

export interface DeviceChangedEvent {
  deviceId: string;
  change: string;
  attestationStatus: string;
  enrollmentState: string;
  previousAttestationStatus: string | null;
  riskScore: number;
  riskBand: string;
  previousRiskBand: string | null;
  siteId: string | null;
  occurredAt: string;
  actor: string;
  reason: string | null;
}

export interface AuditRecordedEvent {
  seq: string;
  occurredAt: string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
  hash: string;
}

export interface EventPublisher {
  publish<K extends keyof AppEvents>(topic: K, payload: AppEvents[K]): void;
}

export interface AttestationDecidedEvent {
  seq: string;
  challengeId: string;
  deviceId: string;
  siteId: string | null;
  outcome: 'PASS' | 'FAIL' | 'TIMEOUT';
  reasons: string[];
  nonceMatch: boolean | null;
  certChainValid: boolean | null;
  signatureValid: boolean | null;
  firmwareHash: string | null;
  timestamp: string | null;
  receivedAt: string | null;
  latencyMs: number | null;
  riskScore: number | null;
  status: string;
  decidedAt: string;
}
