import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import type { CaseService } from '../cases/case.service.js';
import type { CrlService } from '../certificates/crl.service.js';
import { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import { deviceChanged } from '../devices/device-events.js';
import { Device, type AttestationStatus, type EnrollmentState } from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import { DeviceNotFoundError, InvalidTransitionError, ValidationError } from '../shared/errors.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';

/** RFC 5280 5.3.1 CRLReason codes an operator may give. */
export const REVOCATION_REASONS = {
  UNSPECIFIED: 0,
  KEY_COMPROMISE: 1,
  AFFILIATION_CHANGED: 3,
  SUPERSEDED: 4,
  CESSATION_OF_OPERATION: 5,
  PRIVILEGE_WITHDRAWN: 9,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

/**
 * Operator decisions on an enrolled device: approve, reject, revoke. Each is one transaction holding
 * the device's row lock from the read to the commit, so racing decisions run one after the other and
 * the later one is judged on the state the earlier one left (approve after a revoke is an
 * InvalidTransition). Background writers (the challenge scheduler, attestation results) wait for or
 * skip a locked device, so a revocation never fails because a challenge was being sent at that moment.
 */
export class DeviceLifecycleService {
  constructor(
    private readonly audit: AuditService,
    private readonly cases: CaseService,
    private readonly crl: CrlService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  async approve(em: EntityManager, deviceId: string, actor: string): Promise<Device> {
    return this.decide(em, deviceId, actor, async (tx, device) => {
      if (device.enrollmentState !== 'ENROLLED')
        throw new InvalidTransitionError(device.enrollmentState, 'APPROVED');
      const now = this.clock.now();
      // The first challenge goes out at once: approval is a promise the device is still what it claimed.
      this.move(device, 'APPROVED', 'VERIFIED', { nextChallengeAt: now });
      await tx.em.flush();
      await this.audit.record(tx, { actor, action: 'device.approved', subject: `device:${deviceId}` });
      return { change: 'approved', reason: null };
    });
  }

  async reject(em: EntityManager, deviceId: string, reason: string, actor: string): Promise<Device> {
    const why = requireReason(reason);
    return this.decide(em, deviceId, actor, async (tx, device) => {
      if (device.enrollmentState !== 'ENROLLED')
        throw new InvalidTransitionError(device.enrollmentState, 'REJECTED');
      this.move(device, 'REJECTED', 'REVOKED', { nextChallengeAt: null });
      await tx.em.flush();
      const serials = await this.revokeCertificates(tx, device, REVOCATION_REASONS.PRIVILEGE_WITHDRAWN);
      await this.cases.openOrAppend(tx, {
        title: `Enrollment of ${deviceId} rejected`,
        severity: 'MEDIUM',
        source: 'ENROLLMENT_REJECTED',
        deviceRef: device.id,
        evidence: { reason: why, revokedSerials: serials, rejectedBy: actor },
        actor,
      });
      await this.audit.record(tx, {
        actor,
        action: 'device.rejected',
        subject: `device:${deviceId}`,
        details: { reason: why, revokedSerials: serials },
      });
      tx.emit('device.revoked', { deviceId, serials });
      return { change: 'rejected', reason: why };
    });
  }

  async revoke(
    em: EntityManager,
    deviceId: string,
    reason: string,
    reasonCode: RevocationReason,
    actor: string,
  ): Promise<Device> {
    const why = requireReason(reason);
    return this.decide(em, deviceId, actor, async (tx, device) => {
      if (device.enrollmentState === 'REVOKED') throw new InvalidTransitionError('REVOKED', 'REVOKED');
      this.move(device, 'REVOKED', 'REVOKED', { nextChallengeAt: null });
      await tx.em.flush();
      const serials = await this.revokeCertificates(tx, device, REVOCATION_REASONS[reasonCode]);
      await this.audit.record(tx, {
        actor,
        action: 'device.revoked',
        subject: `device:${deviceId}`,
        details: { reason: why, reasonCode, revokedSerials: serials },
      });
      tx.emit('device.revoked', { deviceId, serials });
      return { change: 'revoked', reason: why };
    });
  }

  private async decide(
    em: EntityManager,
    deviceId: string,
    actor: string,
    work: (tx: Tx, device: Device) => Promise<{ change: string; reason: string | null }>,
  ): Promise<Device> {
    return this.transactions.run(em, async (tx) => {
      const device = await tx.em.findOne(
        Device,
        { deviceId },
        { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
      );
      if (!device) throw new DeviceNotFoundError(deviceId);
      const previous = device.attestationStatus;
      const { change, reason } = await work(tx, device);
      tx.emit(
        'device.changed',
        deviceChanged(device, { change, previousStatus: previous, actor, reason, at: this.clock.now() }),
      );
      return device;
    });
  }

  private move(
    device: Device,
    state: EnrollmentState,
    status: AttestationStatus,
    extra: Partial<Pick<Device, 'nextChallengeAt'>>,
  ): void {
    Object.assign(device, {
      enrollmentState: state,
      attestationStatus: status,
      updatedAt: this.clock.now(),
      ...extra,
    });
  }

  /** Revokes every live certificate of the device and re-signs the CRL in the same transaction. */
  private async revokeCertificates(tx: Tx, device: Device, reasonCode: number): Promise<string[]> {
    const live = await tx.em.find(DeviceCertificate, {
      deviceRef: device.id,
      status: { $in: ['ACTIVE', 'SUPERSEDED'] },
    });
    const now = this.clock.now();
    for (const certificate of live) {
      Object.assign(certificate, { status: 'REVOKED', revokedAt: now, revocationReason: reasonCode });
    }
    await tx.em.flush();
    if (live.length > 0) await this.crl.publish(tx.em);
    return live.map((certificate) => certificate.serialHex);
  }
}

function requireReason(reason: string): string {
  const trimmed = reason.trim();
  if (trimmed.length < 3 || trimmed.length > 500)
    throw new ValidationError('reason', 'a reason of 3-500 characters is required');
  return trimmed;
}
