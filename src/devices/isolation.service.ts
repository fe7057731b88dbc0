import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { requireText } from '../cases/case.rules.js';
import type { CaseService } from '../cases/case.service.js';
import type { Clock } from '../shared/clock.js';
import { DeviceNotFoundError, InvalidTransitionError } from '../shared/errors.js';
import type { TransactionRunner } from '../shared/transaction.js';
import { deviceChanged } from './device-events.js';
import { Device } from './device.entity.js';

const ISOLATION_STATE = (isolated: boolean) => (isolated ? 'ISOLATED' : 'NOT_ISOLATED');

/**
 * Isolation: an operator cuts a suspect device off from everything but attestation, so it can still
 * prove (or fail to prove) what it runs while its telemetry and enrollment requests are refused. The
 * flag is orthogonal to the enrollment lifecycle: any device may be isolated, whatever its state.
 * Brokers learn of it from the `device.changed` event (see IsolatedDeviceSet).
 */
export class DeviceIsolationService {
  constructor(
    private readonly audit: AuditService,
    private readonly cases: CaseService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  isolate(em: EntityManager, deviceId: string, reason: string, actor: string): Promise<Device> {
    return this.setIsolated(em, deviceId, true, reason, actor);
  }

  release(em: EntityManager, deviceId: string, reason: string, actor: string): Promise<Device> {
    return this.setIsolated(em, deviceId, false, reason, actor);
  }

  /**
   * One transaction under the device's row lock: the flag, the case entries and the audit event commit
   * together, and a racing second isolation waits and then finds the device already isolated.
   */
  private async setIsolated(
    em: EntityManager,
    deviceId: string,
    isolated: boolean,
    reason: string,
    actor: string,
  ): Promise<Device> {
    const why = requireText('reason', reason, 3, 500);
    try {
      return await this.transactions.run(em, async (tx) => {
        const device = await tx.em.findOne(
          Device,
          { deviceId },
          { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
        );
        if (!device) throw new DeviceNotFoundError(deviceId);
        if (device.isolated === isolated) {
          throw new InvalidTransitionError(
            ISOLATION_STATE(isolated),
            ISOLATION_STATE(isolated),
            `device ${deviceId} is ${isolated ? 'already isolated' : 'not isolated'}`,
          );
        }
        const now = this.clock.now();
        device.isolated = isolated;
        device.updatedAt = now;
        await tx.em.flush();
        const caseNumbers = await this.cases.recordDeviceAction(tx, {
          kind: isolated ? 'DEVICE_ISOLATED' : 'DEVICE_RELEASED',
          deviceRef: device.id,
          reason: why,
          payload: { deviceId, isolated },
          actor,
          caseTitle: isolated ? `${deviceId} isolated` : `${deviceId} released from isolation`,
          caseSeverity: 'HIGH',
        });
        await this.audit.record(tx, {
          actor,
          action: isolated ? 'device.isolated' : 'device.released',
          subject: `device:${deviceId}`,
          details: { reason: why, cases: caseNumbers },
        });
        tx.emit(
          'device.changed',
          deviceChanged(device, {
            change: isolated ? 'isolated' : 'released',
            previousStatus: device.attestationStatus,
            actor,
            reason: why,
            at: now,
          }),
        );
        return device;
      });
    } catch (error) {
      // An illegal move is a decision too: the trail shows who tried it. On a fork, so that an
      // idempotency key enlisted on `em` is not claimed by a request that changed nothing.
      if (error instanceof InvalidTransitionError) {
        await this.transactions.run(em.fork(), (tx) =>
          this.audit.record(tx, {
            actor,
            action: 'device.isolation-refused',
            subject: `device:${deviceId}`,
            details: { operation: isolated ? 'isolate' : 'release', reason: why, message: error.message },
          }),
        );
      }
      throw error;
    }
  }
}
