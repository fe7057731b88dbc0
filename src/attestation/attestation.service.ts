import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditInput, AuditService } from '../audit/audit.service.js';
import type { CaseService } from '../cases/case.service.js';
import { deviceChanged } from '../devices/device-events.js';
import { Device, type Criticality, type DeviceType } from '../devices/device.entity.js';
import type { Metrics } from '../observability/metrics.js';
import { approvedHashes, approvedVersion } from '../policy/firmware-policy.js';
import type { PolicyBundleDocument } from '../policy/policy-bundle.document.js';
import type { PolicyBundle } from '../policy/policy-bundle.entity.js';
import type { PolicyBundleService } from '../policy/policy-bundle.service.js';
import type { Clock } from '../shared/clock.js';
import type { AttestationDecidedEvent, DeviceChangedEvent } from '../shared/events.js';
import { DeviceNotFoundError, InvalidTransitionError } from '../shared/errors.js';
import { GroupCommit } from '../shared/group-commit.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';
import type { FailureReason, Outcome } from './attestation-result.entity.js';
import type { AttestationSettingsValues } from './attestation-settings.entity.js';
import type { AttestationSettingsService } from './attestation-settings.service.js';
import {
  claimDueDevices,
  insertChallenges,
  readChallenges,
  lockOverdueChallenges,
  writeDecisions,
  type ChallengeClaim,
  type DecisionRow,
  type DeviceAttestationState,
  type LockedDecisions,
  type NewChallenge,
  type ResultRow,
} from './attestation.store.js';
import type { EvidenceVerdict, EvidenceVerifier } from './evidence-verifier.js';

/** Largest response accepted; a DICE response with a short chain is a few KiB. */
export const MAX_RESPONSE_BYTES = 32 * 1024;
/** Devices claimed per scheduler pass and per transaction; overdue challenges likewise. */
export const CLAIM_BATCH = 200;
/**
 * Group commit of responses: a group closes at GROUP_MAX responses or GROUP_DELAY_MS after its first,
 * and GROUP_IN_FLIGHT groups run at once (one verifying while another waits on the database). A few
 * milliseconds of waiting turn one transaction per response into one per group.
 */
const GROUP_MAX = 256;
const GROUP_DELAY_MS = 3;
const GROUP_IN_FLIGHT = 3;
/** +-10 % on every interval, so a fleet approved at once spreads out instead of firing together. */
const JITTER = 0.1;

/** The port through which challenges leave (MQTT today). Must not throw for an offline device. */
export interface ChallengeTransport {
  publishChallenge(deviceId: string, challenge: ChallengeMessage, expirySeconds: number): Promise<void>;
}

/**
 * The transport as the rest of the service sees it: built before the MQTT client exists and
 * connected to it once it does. Until then a challenge cannot leave and simply times out.
 */
export class LateBoundChallengeTransport implements ChallengeTransport {
  #target: ChallengeTransport | undefined;

  connect(target: ChallengeTransport): void {
    this.#target = target;
  }

  publishChallenge(deviceId: string, challenge: ChallengeMessage, expirySeconds: number): Promise<void> {
    if (!this.#target) return Promise.reject(new Error('no challenge transport connected yet'));
    return this.#target.publishChallenge(deviceId, challenge, expirySeconds);
  }
}

export interface ChallengeMessage {
  type: 'attestation_challenge';
  device_id: string;
  nonce: string;
  timestamp: string;
  challenge_id: string;
}

/** Where a response came from: its own topic (broker-attributed) or the shared bare topic. */
export interface ResponseOrigin {
  topicDeviceId: string | undefined;
  receivedAt: Date;
}

/**
 * What became of a response. `error`: verifying or recording it failed (the caller logs it); its
 * challenge stays open and times out, so a crash never counts as a PASS (fail closed).
 */
export type ResponseDisposition = 'decided' | 'duplicate' | 'late' | 'unattributable' | 'malformed' | 'error';

/** A response that passed the cheap checks, waiting for its group. */
interface QueuedResponse {
  em: EntityManager;
  response: Record<string, unknown>;
  verifier: EvidenceVerifier;
  challengeId: string;
  payloadHash: string;
  origin: ResponseOrigin;
}

type Settled = { disposition: ResponseDisposition } | { error: unknown };

/**
 * The attestation protocol: challenges are claimed from the durable schedule and stored before they
 * are published; each response is verified and decided exactly once; challenges past their deadline
 * end as TIMEOUT. The verifier holds no state the database does not hold.
 *
 * Responses are decided in groups (group commit): one statement locks the group's challenges and
 * devices, the rules run in memory over those rows in arrival order, one statement writes every
 * claim, device state and result, and failures add their cases and audit events, all in one
 * transaction. Events are published after it commits.
 */
export class AttestationService {
  readonly #responses = new GroupCommit<QueuedResponse, Settled>({
    maxItems: GROUP_MAX,
    maxDelayMs: GROUP_DELAY_MS,
    maxInFlight: GROUP_IN_FLIGHT,
    flush: (items) => this.decideResponses(items),
  });

  constructor(
    private readonly settings: AttestationSettingsService,
    private readonly verifiers: readonly EvidenceVerifier[],
    private readonly audit: AuditService,
    private readonly cases: CaseService,
    private readonly policies: PolicyBundleService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Claims devices whose next challenge is due (FOR UPDATE SKIP LOCKED: several instances share the
   * schedule and never claim the same device), stores their challenges and moves their schedule on,
   * then publishes. Returns how many challenges went out.
   */
  async issueDueChallenges(em: EntityManager, transport: ChallengeTransport): Promise<number> {
    const { values } = await this.settings.current(em);
    const issued = await this.transactions.run(em, async (tx) => {
      const now = this.clock.now();
      const due = await claimDueDevices(tx, now, CLAIM_BATCH);
      const opened = due.map((device) =>
        this.newChallenge(
          { id: device.id, deviceId: device.device_id, criticality: device.criticality },
          values,
          now,
        ),
      );
      await insertChallenges(
        tx,
        opened.map(({ challenge }) => challenge),
      );
      return opened;
    });
    await this.publish(issued, transport, values.attestation_timeout_s);
    return issued.length;
  }

  /** An operator's "challenge now": returns the challenge id. */
  async challengeNow(
    em: EntityManager,
    deviceId: string,
    transport: ChallengeTransport,
    actor: string,
  ): Promise<string> {
    const { values } = await this.settings.current(em);
    const opened = await this.transactions.run(em, async (tx) => {
      const device = await tx.em.findOne(Device, { deviceId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!device) throw new DeviceNotFoundError(deviceId);
      if (device.enrollmentState !== 'APPROVED')
        throw new InvalidTransitionError(device.enrollmentState, 'CHALLENGED');
      const challenge = this.newChallenge(device, values, this.clock.now());
      await insertChallenges(tx, [challenge.challenge]);
      await this.audit.record(tx, {
        actor,
        action: 'attestation.challenge-requested',
        subject: `device:${deviceId}`,
        details: { challengeId: challenge.challenge.id },
      });
      return challenge;
    });
    await this.publish([opened], transport, values.attestation_timeout_s);
    return opened.challenge.id;
  }

  /**
   * Decides a challenge from a response payload. Never throws for bad input: everything a device (or
   * anyone able to publish) can send ends in one of the dispositions, counted and, where it concerns
   * a known device, recorded. Resolves once the decision committed. `em` is forked for each unit
   * of work, so the caller may pass the root EntityManager.
   */
  async handleResponse(
    em: EntityManager,
    payload: Buffer,
    origin: ResponseOrigin,
  ): Promise<ResponseDisposition> {
    const started = performance.now();
    try {
      const response = parseResponse(payload);
      if (!response)
        return await this.securityEvent(em, 'malformed', origin.topicDeviceId, { bytes: payload.length });
      const verifier = this.verifiers.find((candidate) => candidate.accepts(response));
      const challengeId = typeof response.challenge_id === 'string' ? response.challenge_id : '';
      if (!verifier || !/^[0-9a-f-]{36}$/.test(challengeId)) {
        return await this.securityEvent(em, 'malformed', origin.topicDeviceId, {
          reason: 'unknown evidence or challenge id',
        });
      }
      const payloadHash = createHash('sha256').update(payload).digest('hex');
      const settled = await this.#responses.submit({
        em,
        response,
        verifier,
        challengeId,
        payloadHash,
        origin,
      });
      if ('error' in settled) throw settled.error;
      return settled.disposition;
    } finally {
      this.metrics.attestationVerifySeconds.observe((performance.now() - started) / 1000);
    }
  }

  /** Resolves when every response received so far has been decided (before the database closes). */
  drain(): Promise<void> {
    return this.#responses.drain();
  }

  /** Ends every open challenge whose deadline passed as TIMEOUT (and crashed verifications with it). */
  async expireOverdue(em: EntityManager): Promise<number> {
    return this.transactions.run(em, async (tx) => {
      const now = this.clock.now();
      const locked = await lockOverdueChallenges(tx, now, CLAIM_BATCH);
      if (locked.rows.length === 0) return 0;
      const { values } = await this.settings.atVersion(tx.em, locked.settingsVersion);
      const group = new DecisionGroup(locked.rows);
      for (const row of locked.rows) group.timeout(row.challengeId, values.failure_threshold, now);
      await this.commit(tx, group);
      return locked.rows.length;
    });
  }

  /** An operator clears a FAILED device after investigation: it is trusted again from the next challenge. */
  async acknowledgeFailure(
    em: EntityManager,
    deviceId: string,
    note: string,
    actor: string,
  ): Promise<Device> {
    return this.transactions.run(em, async (tx) => {
      const device = await tx.em.findOne(Device, { deviceId });
      if (!device) throw new DeviceNotFoundError(deviceId);
      if (device.attestationStatus !== 'FAILED')
        throw new InvalidTransitionError(device.attestationStatus, 'VERIFIED');
      Object.assign(device, {
        attestationStatus: 'VERIFIED',
        failureKind: null,
        consecutiveFailures: 0,
        nextChallengeAt: this.clock.now(),
        updatedAt: this.clock.now(),
      });
      await tx.em.flush();
      await this.audit.record(tx, {
        actor,
        action: 'attestation.failure-acknowledged',
        subject: `device:${deviceId}`,
        details: { note: note.trim().slice(0, 1000) },
      });
      return device;
    });
  }

  private newChallenge(
    device: { id: string; deviceId: string; criticality: Criticality },
    values: AttestationSettingsValues,
    now: Date,
  ): { challenge: NewChallenge; message: ChallengeMessage } {
    const interval =
      device.criticality === 'critical'
        ? values.challenge_interval_critical_s
        : values.challenge_interval_standard_s;
    const jittered = interval * 1000 * (1 - JITTER + Math.random() * 2 * JITTER);
    const challenge: NewChallenge = {
      id: randomUUID(),
      deviceRef: device.id,
      deviceId: device.deviceId,
      nonce: randomBytes(values.nonce_size).toString('hex'),
      issuedAt: now,
      deadlineAt: new Date(now.getTime() + values.attestation_timeout_s * 1000),
      nextChallengeAt: new Date(now.getTime() + jittered),
    };
    return {
      challenge,
      message: {
        type: 'attestation_challenge',
        device_id: device.deviceId,
        nonce: challenge.nonce,
        timestamp: now.toISOString(),
        challenge_id: challenge.id,
      },
    };
  }

  private async publish(
    issued: Array<{ message: ChallengeMessage }>,
    transport: ChallengeTransport,
    expirySeconds: number,
  ): Promise<void> {
    // A challenge that fails to leave simply times out: the stored state already says it was asked.
    await Promise.allSettled(
      issued.map(({ message }) => transport.publishChallenge(message.device_id, message, expirySeconds)),
    );
  }

  /** One group; if it fails as a whole, each response alone, so one bad response cannot sink others. */
  private async decideResponses(items: QueuedResponse[]): Promise<Settled[]> {
    try {
      return (await this.decideGroup(items)).map((disposition) => ({ disposition }));
    } catch (error) {
      if (items.length === 1) return [{ error }];
      const settled: Settled[] = [];
      for (const item of items) {
        try {
          const [disposition] = await this.decideGroup([item]);
          settled.push({ disposition: disposition! });
        } catch (itemError) {
          settled.push({ error: itemError });
        }
      }
      return settled;
    }
  }

  /**
   * The common case, a group that only passes (or ignores duplicates), is read without locks and
   * written in one guarded autocommit statement: no lock is held while the rules run, and it costs
   * two round trips. A group with anything to audit or a case to open, or one that something changed
   * in between (the guard fails), is decided again from scratch under row locks in one transaction.
   */
  private async decideGroup(items: readonly QueuedResponse[]): Promise<ResponseDisposition[]> {
    // One identity map per group (forked here, not per message: a burst shares it).
    const em = items[0]!.em.fork();
    const challengeIds = [...new Set(items.map((item) => item.challengeId))];
    // Cached for a few seconds (no query per group); a publication applies within that time.
    const bundles = await this.policies.currentBundles(em);
    const optimistic = await this.transactions.single(em, async (tx) => {
      const read = await readChallenges(tx, challengeIds, false);
      const group = await this.decideAll(tx, read, items, bundles);
      if (group.audits.length > 0 || group.caseOpenings.length > 0) return undefined;
      try {
        await this.commit(tx, group);
        return group.dispositions;
      } catch (error) {
        if (!isSerializationFailure(error)) throw error;
        return undefined;
      }
    });
    if (optimistic) return optimistic;
    return this.transactions.run(em, async (tx) => {
      const locked = await readChallenges(tx, challengeIds, true);
      const group = await this.decideAll(tx, locked, items, bundles);
      await this.commit(tx, group);
      return group.dispositions;
    });
  }

  private async decideAll(
    tx: Tx,
    read: LockedDecisions,
    items: readonly QueuedResponse[],
    bundles: ReadonlyMap<DeviceType, PolicyBundle>,
  ): Promise<DecisionGroup> {
    const group = new DecisionGroup(read.rows);
    const values =
      read.rows.length > 0 ? (await this.settings.atVersion(tx.em, read.settingsVersion)).values : null;
    for (const item of items) group.dispositions.push(this.decide(group, item, values, bundles));
    return group;
  }

  /** The rules for one response, applied to the group's rows as the previous responses left them. */
  private decide(
    group: DecisionGroup,
    item: QueuedResponse,
    values: AttestationSettingsValues | null,
    bundles: ReadonlyMap<DeviceType, PolicyBundle>,
  ): ResponseDisposition {
    const { challengeId, origin } = item;
    const challenge = group.challenges.get(challengeId);
    // Someone may publish on the shared topic: an unknown challenge changes no device's status.
    if (!challenge || !values)
      return group.securityEvent('unknown-challenge', origin.topicDeviceId, { challengeId });
    if (origin.topicDeviceId !== undefined && origin.topicDeviceId !== challenge.deviceId) {
      return group.securityEvent('wrong-device', origin.topicDeviceId, {
        challengeId,
        challengeDevice: challenge.deviceId,
      });
    }
    if (challenge.state !== 'OPEN' && challenge.responseHash === item.payloadHash) {
      group.duplicates += 1;
      return 'duplicate';
    }
    const device = group.devices.get(challenge.deviceRef)!;
    const bundle = bundles.get(device.type);
    let verdict: EvidenceVerdict;
    try {
      verdict = item.verifier.verify(item.response, {
        challenge,
        device,
        currentCertificate: device.currentCertificate,
        approvedFirmwareHashes: bundle ? approvedHashes(bundle.document, device.model) : null,
        allowedClockSkewS: values.allowed_clock_skew_s,
        receivedAt: origin.receivedAt,
      });
    } catch {
      return group.securityEvent('malformed', challenge.deviceId, { challengeId });
    }
    // Only the device can decide its own challenge: its own broker-guarded topic, or its key's signature.
    const attributable = origin.topicDeviceId === challenge.deviceId || verdict.signatureValid;
    if (!attributable) return group.securityEvent('unattributable', challenge.deviceId, { challengeId });

    if (
      challenge.state === 'TIMED_OUT' ||
      (challenge.state === 'OPEN' && origin.receivedAt > challenge.deadlineAt)
    ) {
      group.audits.push({
        actor: `device:${device.deviceId}`,
        action: 'attestation.late-response',
        subject: `device:${device.deviceId}`,
        details: { challengeId, deadline: challenge.deadlineAt.toISOString() },
      });
      return 'late';
    }
    if (challenge.state === 'ANSWERED') {
      // A second, different answer to a decided challenge: replayed or forged evidence.
      group.fail(device, challenge, { ...verdict, reasons: ['REPLAYED_RESPONSE'] }, origin.receivedAt);
      return 'decided';
    }
    group.claim(challenge, 'ANSWERED', item.payloadHash, origin.receivedAt);
    if (verdict.reasons.length === 0)
      group.pass(device, challenge, verdict, origin.receivedAt, bundle?.document);
    else group.fail(device, challenge, verdict, origin.receivedAt);
    return 'decided';
  }

  /**
   * Writes a group in its transaction: claims, device states and results in one statement, then the
   * failures' cases, then every audit event of the group (last: the audit chain lock is held to commit).
   */
  private async commit(tx: Tx, group: DecisionGroup): Promise<void> {
    if (group.claims.length > 0 || group.results.length > 0) {
      const seqs = await writeDecisions(tx, {
        claims: group.claims,
        devices: [...group.devices.values()].filter((device) => device.changed).map(deviceState),
        results: group.results.map(({ row }) => row),
      });
      group.results.forEach((result, index) => (result.seq = seqs[index]!));
    }
    for (const open of group.caseOpenings) {
      await this.cases.openOrAppend(tx, { ...open(), actor: 'system:attestation' });
    }
    await this.audit.recordMany(tx, group.audits);
    for (const result of group.results) {
      if (result.changed) tx.emit('device.changed', result.changed);
      tx.emit('attestation.decided', () => decidedEvent(result));
      for (const reason of result.row.reasons.length ? result.row.reasons : ['none'])
        this.metrics.attestationResults.inc({ outcome: result.row.outcome, reason });
    }
    for (const kind of group.securityEvents) this.metrics.attestationSecurityEvents.inc({ kind });
    if (group.duplicates > 0) this.metrics.attestationDuplicates.inc(group.duplicates);
  }

  private async securityEvent(
    em: EntityManager,
    kind: string,
    deviceId: string | undefined,
    details: Record<string, unknown>,
  ): Promise<ResponseDisposition> {
    await this.transactions.run(em.fork(), (tx) =>
      this.audit.record(tx, securityAudit(kind, deviceId, details)),
    );
    this.metrics.attestationSecurityEvents.inc({ kind });
    return kind === 'malformed' ? 'malformed' : 'unattributable';
  }
}

/** Unattributable or malformed input: audited (visible to the risk score) with no status change. */
function securityAudit(
  kind: string,
  deviceId: string | undefined,
  details: Record<string, unknown>,
): AuditInput {
  return {
    actor: deviceId ? `mqtt:${deviceId}` : 'mqtt:unknown',
    action: `attestation.security-event.${kind}`,
    subject: deviceId ? `device:${deviceId}` : 'device:unknown',
    details,
  };
}

/** A challenge of the group, as the responses before this one left it. */
interface GroupChallenge extends Omit<NewChallenge, 'nextChallengeAt'> {
  state: DecisionRow['state'];
  responseHash: string | null;
}

/** A device of the group, as the decisions before this one left it. */
interface GroupDevice extends Omit<DeviceAttestationState, 'lastAttestationAt' | 'updatedAt'> {
  deviceId: string;
  type: DeviceType;
  model: string | null;
  siteId: string | null;
  enrollmentState: DecisionRow['enrollmentState'];
  goldenFirmwareHash: string | null;
  firmwareHash: string | null;
  riskScore: number;
  riskBand: DecisionRow['riskBand'];
  currentCertificate: {
    fingerprintSha256: string;
    status: NonNullable<DecisionRow['certificateStatus']>;
  } | null;
  lastAttestationAt: Date | null;
  updatedAt: Date | null;
  changed: boolean;
}

interface GroupResult {
  row: ResultRow;
  changed: DeviceChangedEvent | null;
  seq?: string;
}

type CaseOpening = () => Omit<Parameters<CaseService['openOrAppend']>[1], 'actor'>;

/**
 * The state transitions of one group, in memory over rows locked for it. Rules (the runbook's):
 * PASS -> VERIFIED and the timeout count resets, but a failed check stays FAILED until acknowledged
 * (only UNRESPONSIVE heals by answering); FAIL -> FAILED at once with a case; TIMEOUT -> count + 1,
 * and at the threshold FAILED/UNRESPONSIVE with a case.
 */
class DecisionGroup {
  readonly challenges = new Map<string, GroupChallenge>();
  readonly devices = new Map<string, GroupDevice>();
  readonly claims: ChallengeClaim[] = [];
  readonly results: GroupResult[] = [];
  readonly audits: AuditInput[] = [];
  readonly caseOpenings: CaseOpening[] = [];
  readonly securityEvents: string[] = [];
  /** One per response, in arrival order. */
  readonly dispositions: ResponseDisposition[] = [];
  duplicates = 0;

  constructor(rows: readonly DecisionRow[]) {
    for (const row of rows) {
      this.challenges.set(row.challengeId, {
        id: row.challengeId,
        deviceRef: row.deviceRef,
        deviceId: row.challengeDeviceId,
        nonce: row.nonce,
        issuedAt: row.issuedAt,
        deadlineAt: row.deadlineAt,
        state: row.state,
        responseHash: row.responseHash,
      });
      if (!this.devices.has(row.deviceRef)) {
        this.devices.set(row.deviceRef, {
          id: row.deviceRef,
          deviceId: row.deviceId,
          type: row.type,
          model: row.model,
          siteId: row.siteId,
          enrollmentState: row.enrollmentState,
          goldenFirmwareHash: row.goldenFirmwareHash,
          firmwareHash: row.firmwareHash,
          attestationStatus: row.attestationStatus,
          failureKind: row.failureKind,
          consecutiveFailures: row.consecutiveFailures,
          lastCounter: row.lastCounter,
          lastAttestationAt: null,
          updatedAt: null,
          riskScore: row.riskScore,
          riskBand: row.riskBand,
          version: row.version,
          firmwareUpdate: null,
          currentCertificate:
            row.certificateFingerprint && row.certificateStatus
              ? { fingerprintSha256: row.certificateFingerprint, status: row.certificateStatus }
              : null,
          changed: false,
        });
      }
    }
  }

  securityEvent(
    kind: string,
    deviceId: string | undefined,
    details: Record<string, unknown>,
  ): ResponseDisposition {
    this.securityEvents.push(kind);
    this.audits.push(securityAudit(kind, deviceId, details));
    return kind === 'malformed' ? 'malformed' : 'unattributable';
  }

  claim(
    challenge: GroupChallenge,
    state: 'ANSWERED' | 'TIMED_OUT',
    responseHash: string | null,
    at: Date,
  ): void {
    challenge.state = state;
    challenge.responseHash = responseHash;
    this.claims.push({ id: challenge.id, state, responseHash, decidedAt: at });
  }

  pass(
    device: GroupDevice,
    challenge: GroupChallenge,
    verdict: EvidenceVerdict,
    receivedAt: Date,
    policy: PolicyBundleDocument | undefined,
  ): void {
    const previous = device.attestationStatus;
    const attested = verdict.firmwareHash;
    // A device updated to another accepted image runs it from now on: risk scores that image, and the
    // device's own golden value (when facilities pinned none) moves with it, so it cannot fall back
    // to an image that was accepted only as the one it enrolled with.
    if (attested !== null && attested !== device.firmwareHash) {
      const version = policy ? approvedVersion(policy, device.model, attested) : null;
      this.audits.push({
        actor: 'system:attestation',
        action: 'device.firmware-updated',
        subject: `device:${device.deviceId}`,
        details: { challengeId: challenge.id, from: device.firmwareHash, to: attested, version },
      });
      device.firmwareHash = attested;
      device.firmwareUpdate = { hash: attested, version };
    }
    device.consecutiveFailures = 0;
    if (verdict.counter !== null) device.lastCounter = verdict.counter.toString();
    device.lastAttestationAt = receivedAt;
    // A check failure stays until an operator acknowledges it; unresponsiveness heals by answering.
    if (device.attestationStatus === 'FAILED' && device.failureKind === 'UNRESPONSIVE') {
      device.attestationStatus = 'VERIFIED';
      device.failureKind = null;
    } else if (device.attestationStatus === 'PENDING') {
      device.attestationStatus = 'VERIFIED';
    }
    this.record(device, challenge, 'PASS', [], verdict, receivedAt, previous);
  }

  fail(device: GroupDevice, challenge: GroupChallenge, verdict: EvidenceVerdict, receivedAt: Date): void {
    const previous = device.attestationStatus;
    device.attestationStatus = 'FAILED';
    device.failureKind = 'CHECK_FAILED';
    device.lastAttestationAt = receivedAt;
    device.consecutiveFailures = 0;
    const result = this.record(device, challenge, 'FAIL', verdict.reasons, verdict, receivedAt, previous);
    this.caseOpenings.push(() => ({
      title: `Attestation of ${device.deviceId} failed: ${verdict.reasons.join(', ')}`,
      severity: 'CRITICAL',
      source: 'ATTESTATION_FAILURE',
      deviceRef: device.id,
      evidence: {
        challengeId: challenge.id,
        resultSeq: result.seq,
        reasons: verdict.reasons,
        firmwareHash: verdict.firmwareHash,
      },
    }));
    this.audits.push({
      actor: 'system:attestation',
      action: 'attestation.failed',
      subject: `device:${device.deviceId}`,
      details: { challengeId: challenge.id, reasons: verdict.reasons },
    });
  }

  timeout(challengeId: string, failureThreshold: number, now: Date): void {
    const challenge = this.challenges.get(challengeId)!;
    const device = this.devices.get(challenge.deviceRef)!;
    this.claim(challenge, 'TIMED_OUT', null, now);
    const previous = device.attestationStatus;
    device.consecutiveFailures += 1;
    if (device.consecutiveFailures >= failureThreshold && device.attestationStatus !== 'FAILED') {
      device.attestationStatus = 'FAILED';
      device.failureKind = 'UNRESPONSIVE';
      const consecutiveTimeouts = device.consecutiveFailures;
      this.caseOpenings.push(() => ({
        title: `${device.deviceId} stopped answering attestation challenges`,
        severity: 'HIGH',
        source: 'UNRESPONSIVE',
        deviceRef: device.id,
        evidence: { consecutiveTimeouts, lastChallengeId: challenge.id },
      }));
      this.audits.push({
        actor: 'system:attestation',
        action: 'attestation.unresponsive',
        subject: `device:${device.deviceId}`,
        details: { consecutiveTimeouts, threshold: failureThreshold },
      });
    }
    this.record(device, challenge, 'TIMEOUT', [], null, null, previous, now);
  }

  private record(
    device: GroupDevice,
    challenge: GroupChallenge,
    outcome: Outcome,
    reasons: FailureReason[],
    verdict: EvidenceVerdict | null,
    receivedAt: Date | null,
    previousStatus: string,
    decidedAt: Date = receivedAt!,
  ): GroupResult {
    device.updatedAt = decidedAt;
    device.changed = true;
    const result: GroupResult = {
      changed:
        previousStatus === device.attestationStatus
          ? null
          : deviceChanged(device, {
              change: `attestation-${outcome.toLowerCase()}`,
              previousStatus,
              actor: 'system:attestation',
              reason: reasons.join(', ') || null,
              at: decidedAt,
            }),
      row: {
        challengeId: challenge.id,
        deviceRef: device.id,
        deviceId: device.deviceId,
        siteId: device.siteId,
        outcome,
        reasons,
        nonceMatch: verdict?.nonceMatch ?? null,
        certChainValid: verdict?.certChainValid ?? null,
        signatureValid: verdict?.signatureValid ?? null,
        firmwareHash: verdict?.firmwareHash ?? null,
        timestamp: verdict?.timestamp ?? null,
        receivedAt,
        latencyMs: receivedAt ? receivedAt.getTime() - challenge.issuedAt.getTime() : null,
        // The score as it stood when the result was decided; the result itself rescored it afterwards.
        riskScore: device.riskScore,
        status: device.attestationStatus,
        decidedAt,
      },
    };
    this.results.push(result);
    return result;
  }
}

function deviceState(device: GroupDevice): DeviceAttestationState {
  return {
    id: device.id,
    version: device.version,
    attestationStatus: device.attestationStatus,
    failureKind: device.failureKind,
    consecutiveFailures: device.consecutiveFailures,
    lastCounter: device.lastCounter,
    lastAttestationAt: device.lastAttestationAt,
    updatedAt: device.updatedAt!,
    firmwareUpdate: device.firmwareUpdate,
  };
}

function decidedEvent(result: GroupResult): AttestationDecidedEvent {
  const { row } = result;
  return {
    seq: result.seq!,
    challengeId: row.challengeId,
    deviceId: row.deviceId,
    siteId: row.siteId,
    outcome: row.outcome,
    reasons: row.reasons,
    nonceMatch: row.nonceMatch,
    certChainValid: row.certChainValid,
    signatureValid: row.signatureValid,
    firmwareHash: row.firmwareHash,
    timestamp: row.timestamp?.toISOString() ?? null,
    receivedAt: row.receivedAt?.toISOString() ?? null,
    latencyMs: row.latencyMs,
    riskScore: row.riskScore,
    status: row.status,
    decidedAt: row.decidedAt.toISOString(),
  };
}

/** serialization_failure (the group guard) or deadlock_detected: decide the group again under locks. */
function isSerializationFailure(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return code === '40001' || code === '40P01';
}

function parseResponse(payload: Buffer): Record<string, unknown> | undefined {
  if (payload.length > MAX_RESPONSE_BYTES) return undefined;
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
