import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import type { CaseService } from '../cases/case.service.js';
import { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import { deviceChanged } from '../devices/device-events.js';
import { Device } from '../devices/device.entity.js';
import type { Metrics } from '../observability/metrics.js';
import { approvedHashes } from '../policy/firmware-policy.js';
import type { PolicyBundleService } from '../policy/policy-bundle.service.js';
import type { Clock } from '../shared/clock.js';
import type { AttestationDecidedEvent } from '../shared/events.js';
import { DeviceNotFoundError, InvalidTransitionError } from '../shared/errors.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';
import { AttestationResult, type FailureReason, type Outcome } from './attestation-result.entity.js';
import type { AttestationSettingsService } from './attestation-settings.service.js';
import { AttestationChallenge } from './challenge.entity.js';
import type { EvidenceVerdict, EvidenceVerifier } from './evidence-verifier.js';

/** Largest response accepted; a DICE response with a short chain is a few KiB. */
export const MAX_RESPONSE_BYTES = 32 * 1024;
/** Devices claimed per scheduler pass and per transaction. */
const CLAIM_BATCH = 200;
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

export type ResponseDisposition = 'decided' | 'duplicate' | 'late' | 'unattributable' | 'malformed';

/**
 * The attestation protocol: challenges are claimed from the durable schedule and stored before they
 * are published; each response is verified and decided exactly once; challenges past their deadline
 * end as TIMEOUT. The verifier holds no state the database does not hold.
 */
export class AttestationService {
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
      const due = await tx.em.getConnection().execute<{ id: string }[]>(
        `select id from device
            where enrollment_state = 'APPROVED' and next_challenge_at <= ?
            order by next_challenge_at limit ? for update skip locked`,
        [now, CLAIM_BATCH],
        'all',
        tx.em.getTransactionContext(),
      );
      if (due.length === 0) return [];
      const devices = await tx.em.find(Device, { id: { $in: due.map((row) => row.id) } });
      return devices.map((device) => this.openChallenge(tx, device, values));
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
    const challenge = await this.transactions.run(em, async (tx) => {
      const device = await tx.em.findOne(Device, { deviceId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!device) throw new DeviceNotFoundError(deviceId);
      if (device.enrollmentState !== 'APPROVED')
        throw new InvalidTransitionError(device.enrollmentState, 'CHALLENGED');
      const opened = this.openChallenge(tx, device, values);
      await this.audit.record(tx, {
        actor,
        action: 'attestation.challenge-requested',
        subject: `device:${deviceId}`,
        details: { challengeId: opened.challenge.id },
      });
      return opened;
    });
    await this.publish([challenge], transport, values.attestation_timeout_s);
    return challenge.challenge.id;
  }

  /**
   * Decides a challenge from a response payload. Never throws for bad input: everything a device (or
   * anyone able to publish) can send ends in one of the dispositions, counted and, where it concerns
   * a known device, recorded.
   */
  async handleResponse(
    em: EntityManager,
    payload: Buffer,
    origin: ResponseOrigin,
  ): Promise<ResponseDisposition> {
    const started = performance.now();
    try {
      return await this.decide(em, payload, origin);
    } finally {
      this.metrics.attestationVerifySeconds.observe((performance.now() - started) / 1000);
    }
  }

  /** Ends every open challenge whose deadline passed as TIMEOUT (and crashed verifications with it). */
  async expireOverdue(em: EntityManager): Promise<number> {
    const { values } = await this.settings.current(em);
    return this.transactions.run(em, async (tx) => {
      const now = this.clock.now();
      const overdue = await tx.em.getConnection().execute<{ id: string }[]>(
        `select id from attestation_challenge where state = 'OPEN' and deadline_at <= ?
            order by deadline_at limit ? for update skip locked`,
        [now, CLAIM_BATCH],
        'all',
        tx.em.getTransactionContext(),
      );
      for (const { id } of overdue) {
        const challenge = await tx.em.findOneOrFail(AttestationChallenge, { id });
        const device = await tx.em.findOne(Device, { id: challenge.deviceRef });
        challenge.state = 'TIMED_OUT';
        challenge.decidedAt = now;
        if (!device) continue;
        const previous = device.attestationStatus;
        device.consecutiveFailures += 1;
        if (device.consecutiveFailures >= values.failure_threshold && device.attestationStatus !== 'FAILED') {
          device.attestationStatus = 'FAILED';
          device.failureKind = 'UNRESPONSIVE';
          await this.cases.openOrAppend(tx, {
            title: `${device.deviceId} stopped answering attestation challenges`,
            severity: 'HIGH',
            source: 'UNRESPONSIVE',
            deviceRef: device.id,
            evidence: { consecutiveTimeouts: device.consecutiveFailures, lastChallengeId: challenge.id },
            actor: 'system:attestation',
          });
          await this.audit.record(tx, {
            actor: 'system:attestation',
            action: 'attestation.unresponsive',
            subject: `device:${device.deviceId}`,
            details: { consecutiveTimeouts: device.consecutiveFailures, threshold: values.failure_threshold },
          });
        }
        this.recordResult(tx, device, challenge, 'TIMEOUT', [], null, null, previous);
      }
      await tx.em.flush();
      return overdue.length;
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

  private openChallenge(
    tx: Tx,
    device: Device,
    values: {
      nonce_size: number;
      attestation_timeout_s: number;
      challenge_interval_critical_s: number;
      challenge_interval_standard_s: number;
    },
  ): { challenge: AttestationChallenge; message: ChallengeMessage } {
    const now = this.clock.now();
    const challenge = Object.assign(new AttestationChallenge(), {
      id: randomUUID(),
      deviceRef: device.id,
      deviceId: device.deviceId,
      nonce: randomBytes(values.nonce_size).toString('hex'),
      issuedAt: now,
      deadlineAt: new Date(now.getTime() + values.attestation_timeout_s * 1000),
    });
    tx.em.persist(challenge);
    const interval =
      device.criticality === 'critical'
        ? values.challenge_interval_critical_s
        : values.challenge_interval_standard_s;
    const jittered = interval * 1000 * (1 - JITTER + Math.random() * 2 * JITTER);
    device.nextChallengeAt = new Date(now.getTime() + jittered);
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

  private async decide(
    em: EntityManager,
    payload: Buffer,
    origin: ResponseOrigin,
  ): Promise<ResponseDisposition> {
    const response = parseResponse(payload);
    if (!response)
      return this.securityEvent(em, 'malformed', origin.topicDeviceId, { bytes: payload.length });
    const verifier = this.verifiers.find((candidate) => candidate.accepts(response));
    const challengeId = typeof response.challenge_id === 'string' ? response.challenge_id : '';
    if (!verifier || !/^[0-9a-f-]{36}$/.test(challengeId)) {
      return this.securityEvent(em, 'malformed', origin.topicDeviceId, {
        reason: 'unknown evidence or challenge id',
      });
    }
    const payloadHash = createHash('sha256').update(payload).digest('hex');
    const { values } = await this.settings.current(em);
    // Cached for a few seconds (no query per attestation); a publication applies within that time.
    const bundles = await this.policies.currentBundles(em);

    return this.transactions.run(em, async (tx) => {
      const challenge = await tx.em.findOne(
        AttestationChallenge,
        { id: challengeId },
        { lockMode: LockMode.PESSIMISTIC_WRITE },
      );
      // Someone may publish on the shared topic: an unknown challenge changes no device's status.
      if (!challenge)
        return this.securityEventIn(tx, 'unknown-challenge', origin.topicDeviceId, { challengeId });
      if (origin.topicDeviceId !== undefined && origin.topicDeviceId !== challenge.deviceId) {
        return this.securityEventIn(tx, 'wrong-device', origin.topicDeviceId, {
          challengeId,
          challengeDevice: challenge.deviceId,
        });
      }
      if (challenge.state !== 'OPEN' && challenge.responseHash === payloadHash) {
        this.metrics.attestationDuplicates.inc();
        return 'duplicate';
      }
      const device = await tx.em.findOneOrFail(Device, { id: challenge.deviceRef });
      const currentCertificate = await tx.em.findOne(
        DeviceCertificate,
        { deviceRef: device.id, status: { $in: ['ACTIVE', 'REVOKED'] } },
        { orderBy: { issuedAt: 'desc' } },
      );
      const bundle = bundles.get(device.type);
      let verdict: EvidenceVerdict;
      try {
        verdict = verifier.verify(response, {
          challenge,
          device,
          currentCertificate,
          approvedFirmwareHashes: bundle ? approvedHashes(bundle.document, device.model) : null,
          allowedClockSkewS: values.allowed_clock_skew_s,
          receivedAt: origin.receivedAt,
        });
      } catch {
        return this.securityEventIn(tx, 'malformed', challenge.deviceId, { challengeId });
      }
      // Only the device can decide its own challenge: its own broker-guarded topic, or its key's signature.
      const attributable = origin.topicDeviceId === challenge.deviceId || verdict.signatureValid;
      if (!attributable)
        return this.securityEventIn(tx, 'unattributable', challenge.deviceId, { challengeId });

      if (
        challenge.state === 'TIMED_OUT' ||
        (challenge.state === 'OPEN' && origin.receivedAt > challenge.deadlineAt)
      ) {
        await this.audit.record(tx, {
          actor: `device:${device.deviceId}`,
          action: 'attestation.late-response',
          subject: `device:${device.deviceId}`,
          details: { challengeId, deadline: challenge.deadlineAt.toISOString() },
        });
        return 'late';
      }
      if (challenge.state === 'ANSWERED') {
        // A second, different answer to a decided challenge: replayed or forged evidence.
        await this.fail(
          tx,
          device,
          challenge,
          { ...verdict, reasons: ['REPLAYED_RESPONSE'] },
          origin.receivedAt,
        );
        return 'decided';
      }
      challenge.state = 'ANSWERED';
      challenge.responseHash = payloadHash;
      challenge.decidedAt = origin.receivedAt;
      if (verdict.reasons.length === 0) {
        this.pass(tx, device, challenge, verdict, origin.receivedAt);
      } else {
        await this.fail(tx, device, challenge, verdict, origin.receivedAt);
      }
      await tx.em.flush();
      return 'decided';
    });
  }

  private pass(
    tx: Tx,
    device: Device,
    challenge: AttestationChallenge,
    verdict: EvidenceVerdict,
    receivedAt: Date,
  ): void {
    const previous = device.attestationStatus;
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
    this.recordResult(tx, device, challenge, 'PASS', [], verdict, receivedAt, previous);
  }

  private async fail(
    tx: Tx,
    device: Device,
    challenge: AttestationChallenge,
    verdict: EvidenceVerdict,
    receivedAt: Date,
  ): Promise<void> {
    const previous = device.attestationStatus;
    device.attestationStatus = 'FAILED';
    device.failureKind = 'CHECK_FAILED';
    device.lastAttestationAt = receivedAt;
    device.consecutiveFailures = 0;
    const result = this.recordResult(
      tx,
      device,
      challenge,
      'FAIL',
      verdict.reasons,
      verdict,
      receivedAt,
      previous,
    );
    await tx.em.flush();
    await this.cases.openOrAppend(tx, {
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
      actor: 'system:attestation',
    });
    await this.audit.record(tx, {
      actor: 'system:attestation',
      action: 'attestation.failed',
      subject: `device:${device.deviceId}`,
      details: { challengeId: challenge.id, reasons: verdict.reasons },
    });
  }

  private recordResult(
    tx: Tx,
    device: Device,
    challenge: AttestationChallenge,
    outcome: Outcome,
    reasons: FailureReason[],
    verdict: EvidenceVerdict | null,
    receivedAt: Date | null,
    previousStatus: string,
  ): AttestationResult {
    const decidedAt = receivedAt ?? this.clock.now();
    if (previousStatus !== device.attestationStatus) {
      tx.emit(
        'device.changed',
        deviceChanged(device, {
          change: `attestation-${outcome.toLowerCase()}`,
          previousStatus,
          actor: 'system:attestation',
          reason: reasons.join(', ') || null,
          at: decidedAt,
        }),
      );
    }
    const result = Object.assign(new AttestationResult(), {
      challengeId: challenge.id,
      deviceRef: device.id,
      deviceId: device.deviceId,
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
    });
    device.updatedAt = decidedAt;
    tx.em.persist(result);
    for (const reason of reasons.length ? reasons : ['none'])
      this.metrics.attestationResults.inc({ outcome, reason });
    tx.emit('attestation.decided', () => this.decidedEvent(result, device));
    return result;
  }

  private decidedEvent(result: AttestationResult, device: Device): AttestationDecidedEvent {
    return {
      seq: result.seq,
      challengeId: result.challengeId,
      deviceId: result.deviceId,
      siteId: device.siteId,
      outcome: result.outcome,
      reasons: result.reasons,
      nonceMatch: result.nonceMatch,
      certChainValid: result.certChainValid,
      signatureValid: result.signatureValid,
      firmwareHash: result.firmwareHash,
      timestamp: result.timestamp?.toISOString() ?? null,
      receivedAt: result.receivedAt?.toISOString() ?? null,
      latencyMs: result.latencyMs,
      riskScore: result.riskScore,
      status: result.status,
      decidedAt: result.decidedAt.toISOString(),
    };
  }

  private async securityEvent(
    em: EntityManager,
    kind: string,
    deviceId: string | undefined,
    details: Record<string, unknown>,
  ): Promise<ResponseDisposition> {
    return this.transactions.run(em, (tx) => this.securityEventIn(tx, kind, deviceId, details));
  }

  /** Unattributable or malformed input: counted, audited, visible to the risk score; no status change. */
  private async securityEventIn(
    tx: Tx,
    kind: string,
    deviceId: string | undefined,
    details: Record<string, unknown>,
  ): Promise<ResponseDisposition> {
    this.metrics.attestationSecurityEvents.inc({ kind });
    await this.audit.record(tx, {
      actor: deviceId ? `mqtt:${deviceId}` : 'mqtt:unknown',
      action: `attestation.security-event.${kind}`,
      subject: deviceId ? `device:${deviceId}` : 'device:unknown',
      details,
    });
    return kind === 'malformed' ? 'malformed' : 'unattributable';
  }
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
