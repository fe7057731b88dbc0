import type { CertificateStatus } from '../certificates/device-certificate.entity.js';
import type {
  AttestationStatus,
  Criticality,
  DeviceType,
  EnrollmentState,
  RiskBand,
} from '../devices/device.entity.js';
import type { Tx } from '../shared/transaction.js';
import type { FailureReason, Outcome } from './attestation-result.entity.js';
import type { ChallengeState } from './challenge.entity.js';

/**
 * The attestation hot path in set-based SQL: one statement reads (and locks) everything a group of
 * responses needs, one statement writes every decision of the group. The rules stay in
 * AttestationService; this module only moves rows. Sets travel as one JSON parameter
 * (`jsonb_to_recordset`), which keeps each statement's text, and so its plan, the same for any size.
 */

/** A challenge, its device and the device's current certificate, as one decision needs them. */
export interface DecisionRow {
  challengeId: string;
  deviceRef: string;
  challengeDeviceId: string;
  nonce: string;
  issuedAt: Date;
  deadlineAt: Date;
  state: ChallengeState;
  responseHash: string | null;
  deviceId: string;
  type: DeviceType;
  model: string | null;
  siteId: string | null;
  enrollmentState: EnrollmentState;
  goldenFirmwareHash: string | null;
  firmwareHash: string | null;
  lastCounter: string | null;
  attestationStatus: AttestationStatus;
  failureKind: 'CHECK_FAILED' | 'UNRESPONSIVE' | null;
  consecutiveFailures: number;
  riskScore: number;
  riskBand: RiskBand;
  /** The device row's optimistic-lock version as read. */
  version: number;
  /** The newest ACTIVE or REVOKED certificate: the device's current identity. */
  certificateFingerprint: string | null;
  certificateStatus: CertificateStatus | null;
}

export interface ChallengeClaim {
  id: string;
  state: ChallengeState;
  responseHash: string | null;
  decidedAt: Date;
}

export interface DeviceAttestationState {
  id: string;
  /** The version the decision was made on: the write applies only if the row still has it. */
  version: number;
  attestationStatus: AttestationStatus;
  failureKind: 'CHECK_FAILED' | 'UNRESPONSIVE' | null;
  consecutiveFailures: number;
  lastCounter: string | null;
  lastAttestationAt: Date | null;
  updatedAt: Date;
  /**
   * The firmware a PASS attested when it is not the one recorded (an update to another accepted
   * image), with the version the bundle lists it under; null leaves the recorded firmware as it is.
   */
  firmwareUpdate: { hash: string; version: string | null } | null;
}

export interface ResultRow {
  challengeId: string;
  deviceRef: string;
  deviceId: string;
  siteId: string | null;
  outcome: Outcome;
  reasons: FailureReason[];
  nonceMatch: boolean | null;
  certChainValid: boolean | null;
  signatureValid: boolean | null;
  firmwareHash: string | null;
  timestamp: Date | null;
  receivedAt: Date | null;
  latencyMs: number | null;
  riskScore: number;
  status: AttestationStatus;
  decidedAt: Date;
}

export interface NewChallenge {
  id: string;
  deviceRef: string;
  deviceId: string;
  nonce: string;
  issuedAt: Date;
  deadlineAt: Date;
  nextChallengeAt: Date;
}

interface RawDecisionRow {
  challenge_id: string;
  device_ref: string;
  challenge_device_id: string;
  nonce: string;
  /** The driver hands timestamps over as text (MikroORM maps them itself for entities). */
  issued_at: string;
  deadline_at: string;
  state: ChallengeState;
  response_hash: string | null;
  device_id: string;
  type: DeviceType;
  model: string | null;
  site_id: string | null;
  enrollment_state: EnrollmentState;
  golden_firmware_hash: string | null;
  firmware_hash: string | null;
  last_counter: string | null;
  attestation_status: AttestationStatus;
  failure_kind: 'CHECK_FAILED' | 'UNRESPONSIVE' | null;
  consecutive_failures: number;
  risk_score: number;
  risk_band: RiskBand;
  version: number;
  cert_fingerprint: string | null;
  cert_status: CertificateStatus | null;
  settings_version: number;
}

const run = <T extends object>(tx: Tx, sql: string, params: unknown[]): Promise<T> =>
  tx.em.getConnection().execute<T>(sql, params, 'all', tx.em.getTransactionContext());

const DECISION_COLUMNS = `
       c.id as challenge_id, c.device_ref, c.device_id as challenge_device_id, c.nonce, c.issued_at,
       c.deadline_at, c.state, c.response_hash, d.device_id, d.type, d.model, d.site_id,
       d.enrollment_state, d.golden_firmware_hash, d.firmware_hash, d.last_counter::text as last_counter,
       d.attestation_status, d.failure_kind, d.consecutive_failures, d.risk_score, d.risk_band, d.version,
       k.fingerprint_sha256 as cert_fingerprint, k.status as cert_status,
       (select coalesce(max(version), 0) from attestation_settings)::int as settings_version
  from attestation_challenge c
  join device d on d.id = c.device_ref
  left join lateral (
    select fingerprint_sha256, status from device_certificate
     where device_ref = d.id and status in ('ACTIVE', 'REVOKED')
     order by issued_at desc limit 1) k on true`;

export interface LockedDecisions {
  rows: DecisionRow[];
  /** The attestation settings version in force as the rows were read (0: defaults). */
  settingsVersion: number;
}

/**
 * Reads the challenges and their devices with each device's current certificate and the version of
 * the settings in force. With `lock`, locks them (in device order, so two groups never deadlock);
 * without, the rows are a snapshot whose writes `writeDecisions` guards.
 */
export async function readChallenges(
  tx: Tx,
  challengeIds: readonly string[],
  lock: boolean,
): Promise<LockedDecisions> {
  return decisionRows(
    await run<RawDecisionRow[]>(
      tx,
      `select ${DECISION_COLUMNS}
        where c.id = any(string_to_array(?, ',')::uuid[])
        order by d.id, c.id
        ${lock ? 'for update of c, d' : ''}`,
      [challengeIds.join(',')],
    ),
  );
}

/** Locks up to `limit` open challenges past their deadline, skipping rows another decision holds. */
export async function lockOverdueChallenges(tx: Tx, now: Date, limit: number): Promise<LockedDecisions> {
  return decisionRows(
    await run<RawDecisionRow[]>(
      tx,
      `select ${DECISION_COLUMNS}
        where c.state = 'OPEN' and c.deadline_at <= ?
        order by c.deadline_at limit ?
          for update of c, d skip locked`,
      [now, limit],
    ),
  );
}

function decisionRows(raw: RawDecisionRow[]): LockedDecisions {
  return {
    settingsVersion: raw[0]?.settings_version ?? 0,
    rows: raw.map((row) => ({
      challengeId: row.challenge_id,
      deviceRef: row.device_ref,
      challengeDeviceId: row.challenge_device_id,
      nonce: row.nonce,
      issuedAt: new Date(row.issued_at),
      deadlineAt: new Date(row.deadline_at),
      state: row.state,
      responseHash: row.response_hash,
      deviceId: row.device_id,
      type: row.type,
      model: row.model,
      siteId: row.site_id,
      enrollmentState: row.enrollment_state,
      goldenFirmwareHash: row.golden_firmware_hash,
      firmwareHash: row.firmware_hash,
      lastCounter: row.last_counter,
      attestationStatus: row.attestation_status,
      failureKind: row.failure_kind,
      consecutiveFailures: row.consecutive_failures,
      riskScore: row.risk_score,
      riskBand: row.risk_band,
      version: row.version,
      certificateFingerprint: row.cert_fingerprint,
      certificateStatus: row.cert_status,
    })),
  };
}

/**
 * Writes a group's decisions in one statement: challenge claims (only from OPEN), device states
 * (only at the version they were decided on) and result rows. If any claim or device update does
 * not match, `attestation_guard` fails the statement with serialization_failure and nothing of it
 * stays, so it is safe as an autocommit statement over rows read without locks. Returns the result
 * sequence numbers in `results` order.
 */
export async function writeDecisions(
  tx: Tx,
  decisions: {
    claims: readonly ChallengeClaim[];
    devices: readonly DeviceAttestationState[];
    results: readonly ResultRow[];
  },
): Promise<string[]> {
  const [row] = await run<Array<{ seqs: string[] }>>(
    tx,
    `with devices as (
       select * from jsonb_to_recordset(?::jsonb) as v(id uuid, attestation_status text, failure_kind text,
              consecutive_failures int, last_counter text, last_attestation_at timestamptz,
              updated_at timestamptz, version int, firmware_hash text, firmware_version text)),
     -- Device rows first and in id order, as every multi-row device write takes them (no deadlock);
     -- each claim below waits for this, its device being one of them.
     locked as materialized (
       select id from device where id in (select id from devices) order by id for update),
     claimed as (
       update attestation_challenge c
          set state = v.state, response_hash = v.response_hash, decided_at = v.decided_at
         from jsonb_to_recordset(?::jsonb) as v(id uuid, state text, response_hash text, decided_at timestamptz)
        where c.id = v.id and c.state = 'OPEN' and c.device_ref in (select id from locked)
        returning c.id),
     moved as (
       update device d
          set attestation_status = v.attestation_status, failure_kind = v.failure_kind,
              consecutive_failures = v.consecutive_failures, last_counter = v.last_counter::bigint,
              last_attestation_at = v.last_attestation_at, updated_at = v.updated_at,
              firmware_hash = coalesce(v.firmware_hash, d.firmware_hash),
              firmware_version = case when v.firmware_hash is null then d.firmware_version else v.firmware_version end,
              version = d.version + 1
         from devices v
        where d.id = v.id and d.version = v.version and d.id in (select id from locked)
        returning d.id),
     recorded as (
       insert into attestation_result (challenge_id, device_ref, device_id, site_id, outcome, reasons,
              nonce_match, cert_chain_valid, signature_valid, firmware_hash, "timestamp", received_at,
              latency_ms, risk_score, status, decided_at)
       select challenge_id, device_ref, device_id, site_id, outcome, reasons, nonce_match, cert_chain_valid,
              signature_valid, firmware_hash, "timestamp", received_at, latency_ms, risk_score, status,
              decided_at
         from jsonb_to_recordset(?::jsonb) as v(ord int, challenge_id uuid, device_ref uuid,
              device_id text, site_id text, outcome text, reasons jsonb, nonce_match boolean, cert_chain_valid boolean,
              signature_valid boolean, firmware_hash text, "timestamp" timestamptz,
              received_at timestamptz, latency_ms int, risk_score int, status text, decided_at timestamptz)
        order by ord
        returning seq)
     select attestation_guard(
              (select count(*) from claimed) = ? and (select count(*) from moved) = ?,
              'attestation group changed since it was read') as guarded,
            coalesce((select json_agg(seq::text) from recorded), '[]'::json) as seqs`,
    [
      JSON.stringify(
        decisions.devices.map((device) => ({
          id: device.id,
          attestation_status: device.attestationStatus,
          failure_kind: device.failureKind,
          consecutive_failures: device.consecutiveFailures,
          last_counter: device.lastCounter,
          last_attestation_at: device.lastAttestationAt,
          updated_at: device.updatedAt,
          version: device.version,
          firmware_hash: device.firmwareUpdate?.hash ?? null,
          firmware_version: device.firmwareUpdate?.version ?? null,
        })),
      ),
      JSON.stringify(
        decisions.claims.map((claim) => ({
          id: claim.id,
          state: claim.state,
          response_hash: claim.responseHash,
          decided_at: claim.decidedAt,
        })),
      ),
      JSON.stringify(
        decisions.results.map((result, ord) => ({
          ord,
          challenge_id: result.challengeId,
          device_ref: result.deviceRef,
          device_id: result.deviceId,
          site_id: result.siteId,
          outcome: result.outcome,
          reasons: result.reasons,
          nonce_match: result.nonceMatch,
          cert_chain_valid: result.certChainValid,
          signature_valid: result.signatureValid,
          firmware_hash: result.firmwareHash,
          timestamp: result.timestamp,
          received_at: result.receivedAt,
          latency_ms: result.latencyMs,
          risk_score: result.riskScore,
          status: result.status,
          decided_at: result.decidedAt,
        })),
      ),
      decisions.claims.length,
      decisions.devices.length,
    ],
  );
  return row?.seqs ?? [];
}

/**
 * Claims up to `limit` devices whose challenge is due (SKIP LOCKED: instances sharing the schedule
 * never claim the same device); the caller opens their challenges in the same transaction.
 */
export function claimDueDevices(
  tx: Tx,
  now: Date,
  limit: number,
): Promise<Array<{ id: string; device_id: string; criticality: Criticality }>> {
  return run(
    tx,
    `select id, device_id, criticality from device
      where enrollment_state = 'APPROVED' and next_challenge_at <= ?
      order by next_challenge_at limit ? for update skip locked`,
    [now, limit],
  );
}

/** Stores new challenges and moves each device's schedule on, in one statement. */
export async function insertChallenges(tx: Tx, challenges: readonly NewChallenge[]): Promise<void> {
  if (challenges.length === 0) return;
  await run(
    tx,
    `with moved as (
       update device d set next_challenge_at = v.next_challenge_at, version = d.version + 1
         from jsonb_to_recordset(?::jsonb) as v(device_ref uuid, next_challenge_at timestamptz)
        where d.id = v.device_ref
        returning d.id)
     insert into attestation_challenge (id, device_ref, device_id, nonce, issued_at, deadline_at, state)
     select id, device_ref, device_id, nonce, issued_at, deadline_at, 'OPEN'
       from jsonb_to_recordset(?::jsonb) as v(id uuid, device_ref uuid, device_id text, nonce text,
            issued_at timestamptz, deadline_at timestamptz)`,
    [
      JSON.stringify(
        challenges.map((c) => ({ device_ref: c.deviceRef, next_challenge_at: c.nextChallengeAt })),
      ),
      JSON.stringify(
        challenges.map((c) => ({
          id: c.id,
          device_ref: c.deviceRef,
          device_id: c.deviceId,
          nonce: c.nonce,
          issued_at: c.issuedAt,
          deadline_at: c.deadlineAt,
        })),
      ),
    ],
  );
}
