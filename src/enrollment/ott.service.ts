import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { z } from 'zod';
import type { AuditService } from '../audit/audit.service.js';
import { DEVICE_TYPES, Device } from '../devices/device.entity.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import type { Clock } from '../shared/clock.js';
import { DomainError, ForbiddenError, ValidationError } from '../shared/errors.js';
import { DEVICE_ID_PATTERN, SHA256_REF_PATTERN } from '../shared/identifiers.js';
import type { TransactionRunner } from '../shared/transaction.js';
import type { EnrollmentSettings } from './enrollment.settings.js';

export function hashOtt(ott: string): string {
  return createHash('sha256').update(ott, 'utf8').digest('hex');
}

export const ottRequestSchema = z.object({
  device_id: z.string().regex(DEVICE_ID_PATTERN, 'must be a valid device id'),
  cdi_commitment: z.string().regex(SHA256_REF_PATTERN, "must be 'sha256:' and 64 lowercase hex"),
  device_type: z.enum(DEVICE_TYPES),
  firmware_version: z.string().trim().min(1).max(100),
  firmware_hash: z.string().regex(SHA256_REF_PATTERN, "must be 'sha256:' and 64 lowercase hex").optional(),
});

export interface IssuedOtt {
  ott: string;
  expiresAt: Date;
}

/**
 * One-time enrollment tokens: single use, short-lived, bound to one device and its DICE commitment.
 * Only a hash is stored; a new token for a device replaces the outstanding one.
 */
export class OttService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly rateLimiter: RateLimiter,
    private readonly clock: Clock,
    private readonly settings: EnrollmentSettings,
  ) {}

  /** A device asks for a token (REST or MQTT). Every refusal is audited before it is returned. */
  async request(
    em: EntityManager,
    body: unknown,
    origin: { address: string; channel: 'rest' | 'mqtt' },
  ): Promise<IssuedOtt> {
    const parsed = ottRequestSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ValidationError(issue.path.join('.') || 'body', issue.message);
    }
    const input = parsed.data;
    const limits = this.settings.ottRateLimit;
    // Brute force and token flooding: per device and per client address, shared by all instances.
    await this.rateLimiter.hitAll(em, limits.windowSeconds, [
      { key: `ott-device:${input.device_id}`, limit: limits.perDevice },
      { key: `ott-address:${origin.address}`, limit: limits.perAddress },
    ]);

    const actor = `device:${input.device_id}@${origin.address}`;
    try {
      // The checks read outside the write transaction, which then holds no lock while they run.
      const found = await this.deviceWithActiveCertificate(em, input.device_id);
      // Only pre-registered parts may enroll: stops unknown or counterfeit devices joining the fleet.
      if (!found)
        throw new ForbiddenError(
          `device ${input.device_id} is not in the inventory`,
          'device-not-registered',
        );
      const { device, hasActiveCertificate } = found;
      if (device.enrollmentState === 'REVOKED' || device.enrollmentState === 'REJECTED') {
        throw new ForbiddenError(
          `device ${input.device_id} was ${device.enrollmentState.toLowerCase()}; facilities must register it again`,
          'device-revoked',
        );
      }
      // A second identity for a live device is how a clone would slip in: re-enroll with the current key instead.
      if (hasActiveCertificate) {
        throw new ForbiddenError(
          `device ${input.device_id} already holds an active certificate`,
          'already-enrolled',
        );
      }
      if (device.expectedCdiCommitment && device.expectedCdiCommitment !== input.cdi_commitment) {
        throw new ForbiddenError('the CDI commitment differs from the registered one', 'commitment-mismatch');
      }
      if (device.type !== input.device_type) {
        throw new ForbiddenError(
          `device ${input.device_id} is registered as ${device.type}`,
          'device-type-mismatch',
        );
      }
      const { issued, change } = this.newToken(device, {
        cdiCommitment: input.cdi_commitment,
        firmwareVersion: input.firmware_version,
        firmwareHash: input.firmware_hash ?? null,
        issuedBy: actor,
      });
      // The token and its audit event in one statement (no transaction round trips).
      await this.transactions.single(em, (tx) =>
        this.audit.recordInStatement(tx, change, [
          {
            actor,
            action: 'ott.issued',
            subject: `device:${device.deviceId}`,
            details: {
              channel: origin.channel,
              expiresAt: issued.expiresAt.toISOString(),
              firmwareVersion: input.firmware_version,
            },
          },
        ]),
      );
      return issued;
    } catch (error) {
      if (error instanceof DomainError) {
        await this.transactions.run(em, (tx) =>
          this.audit.record(tx, {
            actor,
            action: 'ott.refused',
            subject: `device:${input.device_id}`,
            details: { channel: origin.channel, reason: error.reason, message: error.message },
          }),
        );
      }
      throw error;
    }
  }

  /** An operator issues a token for a device whose commitment the inventory already holds. */
  async issueForOperator(em: EntityManager, deviceId: string, actor: string): Promise<IssuedOtt> {
    return this.transactions.run(em, async (tx) => {
      const device = await tx.em.findOne(Device, { deviceId });
      if (!device)
        throw new ForbiddenError(`device ${deviceId} is not in the inventory`, 'device-not-registered');
      if (device.enrollmentState !== 'REGISTERED') {
        throw new ForbiddenError(
          `device ${deviceId} is ${device.enrollmentState.toLowerCase()}, not awaiting enrollment`,
          'not-awaiting-enrollment',
        );
      }
      if (!device.expectedCdiCommitment) {
        throw new ValidationError(
          'deviceId',
          'the device has no expected CDI commitment in the inventory to bind the token to',
        );
      }
      const { issued, change } = this.newToken(device, {
        cdiCommitment: device.expectedCdiCommitment,
        firmwareVersion: null,
        firmwareHash: null,
        issuedBy: actor,
      });
      await tx.em
        .getConnection()
        .execute(`with ${change.ctes} ${change.select}`, change.params, 'all', tx.em.getTransactionContext());
      await this.audit.record(tx, {
        actor,
        action: 'ott.issued',
        subject: `device:${deviceId}`,
        details: { channel: 'operator', expiresAt: issued.expiresAt.toISOString() },
      });
      return issued;
    });
  }

  /** The device and whether it holds an active certificate, in one query. */
  private async deviceWithActiveCertificate(
    em: EntityManager,
    deviceId: string,
  ): Promise<{ device: Device; hasActiveCertificate: boolean } | null> {
    const [row] = await em.getConnection().execute<Array<Record<string, unknown>>>(
      `select d.*, exists (
         select 1 from device_certificate c where c.device_ref = d.id and c.status = 'ACTIVE'
       ) as has_active_certificate
       from device d where d.device_id = ?`,
      [deviceId],
      'all',
      em.getTransactionContext(),
    );
    if (!row) return null;
    const { has_active_certificate: hasActiveCertificate, ...columns } = row;
    return { device: em.map(Device, columns), hasActiveCertificate: hasActiveCertificate === true };
  }

  /**
   * A new token for `device` and the statement that stores it: the outstanding token (if any) is
   * replaced before the new one is inserted, as the insert reads the replacement's result; the
   * partial unique index keeps at most one outstanding.
   */
  private newToken(
    device: Device,
    binding: {
      cdiCommitment: string;
      firmwareVersion: string | null;
      firmwareHash: string | null;
      issuedBy: string;
    },
  ): { issued: IssuedOtt; change: { ctes: string; when: string; select: string; params: unknown[] } } {
    const now = this.clock.now();
    const ott = randomBytes(32).toString('base64url');
    const expiresAt = new Date(now.getTime() + this.settings.ottLifetimeSeconds * 1000);
    return {
      issued: { ott, expiresAt },
      change: {
        ctes: `replaced as (
           update enrollment_token set state = 'REPLACED' where device_ref = ? and state = 'OUTSTANDING'
           returning id
         ), issued as (
           insert into enrollment_token
             (id, device_ref, token_hash, cdi_commitment, firmware_version, firmware_hash, state,
              issued_at, expires_at, issued_by)
           select ?, ?, ?, ?, ?, ?, 'OUTSTANDING', ?, ?, ? where (select count(*) from replaced) >= 0
           returning id
         )`,
        when: 'issued',
        select: 'select id from issued',
        params: [
          device.id,
          randomUUID(),
          device.id,
          hashOtt(ott),
          binding.cdiCommitment,
          binding.firmwareVersion,
          binding.firmwareHash,
          now,
          expiresAt,
          binding.issuedBy,
        ],
      },
    };
  }
}
