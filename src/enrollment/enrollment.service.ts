import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { DeviceCertificate } from '../certificates/device-certificate.entity.js';
import { deviceChanged } from '../devices/device-events.js';
import { Device } from '../devices/device.entity.js';
import {
  PkiError,
  decodeCsr,
  pemToDer,
  requestedSanUris,
  sha256Hex,
  verifyCsr,
  type CertificateAuthority,
  type ParsedCsr,
} from '../pki/index.js';
import type { Clock } from '../shared/clock.js';
import { DomainError, ForbiddenError, UnauthenticatedError, ValidationError } from '../shared/errors.js';
import type { Tx, TransactionRunner } from '../shared/transaction.js';
import type { EnrollmentGroupService } from './enrollment-group.service.js';
import { EnrollmentToken } from './enrollment-token.entity.js';
import type { EnrollmentSettings } from './enrollment.settings.js';
import { hashOtt } from './ott.service.js';

type IssuedCertificate = Awaited<ReturnType<CertificateAuthority['issueDeviceCertificate']>>;

/** The TLS channel binding of the connection a CSR arrived on (RFC 9266 tls-exporter, RFC 5929 tls-unique). */
export interface ChannelBinding {
  type: 'tls-exporter' | 'tls-unique';
  value: Buffer;
}

export interface EnrollRequest {
  /** The OTT, from `Authorization: Bearer` or HTTP Basic's password. */
  ott: string | undefined;
  /** HTTP Basic's user name, when the client sent one: it must name the token's device. */
  claimedDeviceId?: string | undefined;
  csr: Buffer | string;
  channelBinding: ChannelBinding | undefined;
  clientAddress: string;
}

export interface ManufacturerEnrollRequest {
  /** DER certificates the TLS client presented, leaf first. */
  presentedChain: Buffer[];
  csr: Buffer | string;
  channelBinding: ChannelBinding | undefined;
  clientAddress: string;
}

export interface ReenrollRequest {
  /** DER of the TLS client certificate the request was authenticated with. */
  clientCertificate: Buffer | undefined;
  csr: Buffer | string;
  channelBinding: ChannelBinding | undefined;
  clientAddress: string;
}

export interface EnrollmentResult {
  device: Device;
  certificate: DeviceCertificate;
  der: Buffer;
  /** True when this answered a retry with the certificate issued the first time. */
  replayed: boolean;
}

/**
 * Certificate enrollment (RFC 7030 simpleenroll / simplereenroll) as domain rules: which credential
 * may obtain which certificate. Issuance, token consumption, the certificate row, the device state
 * and the audit event commit together; any refusal is audited and nothing is issued.
 */
export class EnrollmentService {
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
    private readonly settings: EnrollmentSettings,
    private readonly groups: EnrollmentGroupService,
  ) {}

  async enroll(em: EntityManager, request: EnrollRequest): Promise<EnrollmentResult> {
    let subject = request.claimedDeviceId ? `device:${request.claimedDeviceId}` : 'device:unknown';
    try {
      if (!request.ott) throw new UnauthenticatedError('an enrollment token is required', 'token-missing');
      const found = await this.tokenWithDevice(em, hashOtt(request.ott));
      if (!found) throw new UnauthenticatedError('the enrollment token is not valid', 'token-unknown');
      const { token, device } = found;
      subject = `device:${device.deviceId}`;
      // HTTP Basic names a device: a token must not be spent on behalf of another one.
      if (request.claimedDeviceId !== undefined && request.claimedDeviceId !== device.deviceId) {
        throw new UnauthenticatedError(
          'the enrollment token belongs to another device',
          'token-device-mismatch',
        );
      }
      const csr = this.readCsr(request.csr);
      const now = this.clock.now();
      if (token.state === 'CONSUMED') {
        // A lost response must not strand the device: the same key within the token's life gets the same certificate.
        if (token.csrSpkiSha256 === csr.spkiSha256 && now < token.expiresAt && token.certificateId) {
          const certificate = await em.findOneOrFail(DeviceCertificate, { id: token.certificateId });
          if (certificate.status === 'ACTIVE') {
            return { device, certificate, der: pemToDer(certificate.pem), replayed: true };
          }
        }
        throw new UnauthenticatedError('the enrollment token has already been used', 'token-spent');
      }
      if (token.state === 'REPLACED')
        throw new UnauthenticatedError('a newer token replaced this one', 'token-replaced');
      if (now >= token.expiresAt)
        throw new UnauthenticatedError('the enrollment token has expired', 'token-expired');
      this.checkCsrForDevice(csr, device, request.channelBinding);
      const commitment = token.cdiCommitment ?? device.expectedCdiCommitment;
      if (!commitment)
        throw new ValidationError(
          'csr',
          'no CDI commitment is bound to this enrollment',
          'commitment-unknown',
        );

      const issued = await this.issue(csr, device, commitment, now);
      const certificate = this.certificateRow(device, issued, token.id);
      const enrolledEvent = {
        actor: `device:${device.deviceId}@${request.clientAddress}`,
        action: 'device.enrolled',
        subject,
        details: {
          serial: issued.serialHex,
          keyType: csr.key.kind,
          notAfter: issued.notAfter.toISOString(),
          method: 'ott',
        },
      };
      return await this.transactions.single(em, async (tx) => {
        // One statement with its audit event. Conditional consumption: of two concurrent requests
        // with one token, exactly one proceeds; the device row, the certificate row and the event are
        // written only by that one. The device's version moves, so an approve or reject decided on
        // the earlier state conflicts.
        const [enrolled] = await this.audit.recordInStatement<{
          version: number;
          firmware_version: string | null;
          firmware_hash: string | null;
        }>(
          tx,
          {
            ctes: `consumed as (
               update enrollment_token
                  set state = 'CONSUMED', consumed_at = ?, csr_spki_sha256 = ?, certificate_id = ?
                where id = ? and state = 'OUTSTANDING'
               returning id
             ), enrolled as (
               update device
                  set enrollment_state = 'ENROLLED', attestation_status = 'PENDING', cdi_commitment = ?,
                      firmware_version = coalesce(?, firmware_version),
                      firmware_hash = coalesce(?, firmware_hash), updated_at = ?, version = version + 1
                where id = ? and exists (select 1 from consumed)
               returning version, firmware_version, firmware_hash
             ), recorded as (
               insert into device_certificate
                 (id, device_ref, serial_hex, fingerprint_sha256, spki_sha256, pem, not_before, not_after,
                  status, issued_at, enrollment_token_id)
               select ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? from enrolled
             )`,
            when: 'enrolled',
            select: 'select version, firmware_version, firmware_hash from enrolled',
            params: [
              now,
              csr.spkiSha256,
              certificate.id,
              token.id,
              commitment,
              token.firmwareVersion,
              token.firmwareHash,
              now,
              device.id,
              certificate.id,
              certificate.deviceRef,
              certificate.serialHex,
              certificate.fingerprintSha256,
              certificate.spkiSha256,
              certificate.pem,
              certificate.notBefore,
              certificate.notAfter,
              certificate.status,
              certificate.issuedAt,
              certificate.enrollmentTokenId,
            ],
          },
          [enrolledEvent],
        );
        if (!enrolled)
          throw new UnauthenticatedError('the enrollment token has already been used', 'token-spent');
        // A detached copy: the request's EntityManager keeps the row as it read it.
        const updated = Object.assign(new Device(), device, {
          enrollmentState: 'ENROLLED',
          attestationStatus: 'PENDING',
          cdiCommitment: commitment,
          firmwareVersion: enrolled.firmware_version,
          firmwareHash: enrolled.firmware_hash,
          updatedAt: now,
          version: enrolled.version,
        } satisfies Partial<Device>);
        this.emitChanged(tx, updated, 'enrolled', 'PENDING', `device:${device.deviceId}`);
        return { device: updated, certificate, der: issued.der, replayed: false };
      });
    } catch (error) {
      await this.auditRefusal(em, error, 'enrollment.refused', subject, request.clientAddress);
      throw error;
    }
  }

  /**
   * Zero-touch enrollment (flow 4): the manufacturer chain selects an enrollment group, the device is
   * registered under its IDevID CN with the group's defaults, and enrolls in the same request.
   */
  async enrollWithManufacturerChain(
    em: EntityManager,
    request: ManufacturerEnrollRequest,
  ): Promise<EnrollmentResult> {
    let subject = 'device:unknown';
    try {
      const { group, leafCommonName } = await this.groups.match(em, request.presentedChain);
      subject = `device:${leafCommonName}`;
      const existing = await em.findOne(Device, { deviceId: leafCommonName });
      if (existing && (existing.enrollmentState === 'REVOKED' || existing.enrollmentState === 'REJECTED')) {
        throw new ForbiddenError(
          `device ${leafCommonName} was ${existing.enrollmentState.toLowerCase()}`,
          'device-revoked',
        );
      }
      if (existing && (await em.count(DeviceCertificate, { deviceRef: existing.id, status: 'ACTIVE' })) > 0) {
        throw new ForbiddenError(
          `device ${leafCommonName} already holds an active certificate`,
          'already-enrolled',
        );
      }
      const now = this.clock.now();
      const device =
        existing ??
        Object.assign(new Device(), {
          id: randomUUID(),
          deviceId: leafCommonName,
          type: group.defaultDeviceType,
          criticality: group.defaultCriticality,
          siteId: group.defaultSiteId,
          enrollmentGroupId: group.id,
          registeredAt: now,
          updatedAt: now,
        });
      const csr = this.readCsr(request.csr);
      this.checkCsrForDevice(csr, device, request.channelBinding);
      const commitment =
        device.expectedCdiCommitment ??
        requestedSanUris(csr)
          .map((uri) => /^urn:dice:cdi:(sha256:[0-9a-f]{64})$/.exec(uri)?.[1])
          .find((value) => value !== undefined);
      if (!commitment) {
        throw new ValidationError(
          'csr',
          'request the SAN URI urn:dice:cdi:sha256:<hex> carrying the CDI commitment',
          'commitment-unknown',
        );
      }
      const issued = await this.issue(csr, device, commitment, now);
      return await this.transactions.run(em, async (tx) => {
        const row = existing ? await tx.em.findOneOrFail(Device, { id: existing.id }) : device;
        if (!existing) tx.em.persist(row);
        Object.assign(row, {
          enrollmentGroupId: group.id,
          enrollmentState: group.autoApprove ? 'APPROVED' : 'ENROLLED',
          attestationStatus: group.autoApprove ? 'VERIFIED' : 'PENDING',
          nextChallengeAt: group.autoApprove ? now : null,
          cdiCommitment: commitment,
          updatedAt: now,
        });
        await tx.em.flush();
        const certificate = this.recordCertificate(tx, row, issued, null);
        await tx.em.flush();
        await this.audit.record(tx, {
          actor: `${subject}@${request.clientAddress}`,
          action: 'device.enrolled',
          subject,
          details: {
            serial: issued.serialHex,
            keyType: csr.key.kind,
            method: 'manufacturer-certificate',
            group: group.name,
            autoApproved: group.autoApprove,
          },
        });
        this.emitChanged(tx, row, 'enrolled', existing?.attestationStatus ?? null, subject);
        return { device: row, certificate, der: issued.der, replayed: false };
      });
    } catch (error) {
      await this.auditRefusal(em, error, 'enrollment.refused', subject, request.clientAddress);
      throw error;
    }
  }

  /** RFC 7030 4.2.2: renew or re-key with the current certificate as the credential. */
  async reenroll(em: EntityManager, request: ReenrollRequest): Promise<EnrollmentResult> {
    let subject = 'device:unknown';
    try {
      if (!request.clientCertificate) {
        throw new UnauthenticatedError(
          're-enrollment needs the current certificate as TLS client certificate',
          'client-certificate-required',
        );
      }
      const chain = this.ca.verifyChain(request.clientCertificate, this.clock.now());
      if (!chain.ok) {
        throw new UnauthenticatedError(
          `the client certificate is not valid (${chain.reason})`,
          'client-certificate-invalid',
        );
      }
      const fingerprint = sha256Hex(request.clientCertificate);
      const current = await em.findOne(DeviceCertificate, { fingerprintSha256: fingerprint });
      if (!current)
        throw new UnauthenticatedError(
          'the client certificate was not issued to a device',
          'client-certificate-unknown',
        );
      const device = await em.findOneOrFail(Device, { id: current.deviceRef });
      subject = `device:${device.deviceId}`;
      // Only the live identity may renew itself: a revoked or superseded key must not buy a new one.
      if (current.status !== 'ACTIVE') {
        throw new ForbiddenError(
          `the client certificate is ${current.status.toLowerCase()}`,
          'client-certificate-not-current',
        );
      }
      if (device.enrollmentState !== 'ENROLLED' && device.enrollmentState !== 'APPROVED') {
        throw new ForbiddenError(
          `device ${device.deviceId} is ${device.enrollmentState.toLowerCase()}`,
          'device-not-enrolled',
        );
      }
      const csr = this.readCsr(request.csr);
      this.checkCsrForDevice(csr, device, request.channelBinding);
      const now = this.clock.now();
      const issued = await this.issue(csr, device, device.cdiCommitment!, now);
      return await this.transactions.run(em, async (tx) => {
        const superseded = await tx.em.nativeUpdate(
          DeviceCertificate,
          { id: current.id, status: 'ACTIVE' },
          { status: 'SUPERSEDED' },
        );
        if (superseded !== 1)
          throw new ForbiddenError(
            'the client certificate is no longer current',
            'client-certificate-not-current',
          );
        const lockedDevice = await tx.em.findOneOrFail(Device, { id: device.id });
        const certificate = this.recordCertificate(tx, lockedDevice, issued, null);
        lockedDevice.updatedAt = now;
        await tx.em.flush();
        await this.audit.record(tx, {
          actor: `device:${device.deviceId}@${request.clientAddress}`,
          action: 'device.reenrolled',
          subject,
          details: {
            serial: issued.serialHex,
            previousSerial: current.serialHex,
            rekeyed: current.spkiSha256 !== issued.spkiSha256,
          },
        });
        return { device: lockedDevice, certificate, der: issued.der, replayed: false };
      });
    } catch (error) {
      await this.auditRefusal(em, error, 'reenrollment.refused', subject, request.clientAddress);
      throw error;
    }
  }

  /** The token with its device in one query, each entity's columns under its own alias prefix. */
  private async tokenWithDevice(
    em: EntityManager,
    tokenHash: string,
  ): Promise<{ token: EnrollmentToken; device: Device } | null> {
    const columns = (entity: typeof EnrollmentToken | typeof Device, alias: string) =>
      em
        .getMetadata()
        .get(entity.name)
        .props.flatMap((prop) => prop.fieldNames)
        .map((field) => `${alias}."${field}" as "${alias}_${field}"`);
    const [row] = await em.getConnection().execute<Array<Record<string, unknown>>>(
      `select ${[...columns(EnrollmentToken, 't'), ...columns(Device, 'd')].join(', ')}
         from enrollment_token t join device d on d.id = t.device_ref
        where t.token_hash = ?`,
      [tokenHash],
      'all',
      em.getTransactionContext(),
    );
    if (!row) return null;
    const part = (alias: string) =>
      Object.fromEntries(
        Object.entries(row)
          .filter(([key]) => key.startsWith(`${alias}_`))
          .map(([key, value]) => [key.slice(alias.length + 1), value]),
      );
    return { token: em.map(EnrollmentToken, part('t')), device: em.map(Device, part('d')) };
  }

  private readCsr(body: Buffer | string): ParsedCsr {
    try {
      const csr = decodeCsr(body);
      verifyCsr(csr);
      return csr;
    } catch (error) {
      if (error instanceof PkiError) {
        throw new ValidationError('csr', error.message, error.code.toLowerCase().replaceAll('_', '-'));
      }
      throw error;
    }
  }

  private checkCsrForDevice(csr: ParsedCsr, device: Device, binding: ChannelBinding | undefined): void {
    if (csr.commonName !== device.deviceId) {
      throw new ValidationError('csr', `the CSR subject CN must be ${device.deviceId}`, 'csr-cn-mismatch');
    }
    // The chip vendor's key list is what tells a genuine part from an overproduced or cloned one.
    if (device.expectedSpkiSha256 && device.expectedSpkiSha256 !== csr.spkiSha256) {
      throw new ForbiddenError('the CSR key is not the key registered for this device', 'key-not-registered');
    }
    this.checkChannelBinding(csr, binding);
  }

  /**
   * RFC 7030 3.5 with RFC 9266: the CSR's challengePassword carries base64 of the TLS channel binding,
   * proving the CSR was made for this TLS session and not relayed from another one.
   */
  private checkChannelBinding(csr: ParsedCsr, binding: ChannelBinding | undefined): void {
    if (csr.challengePassword === undefined) {
      if (this.settings.requireChannelBinding) {
        throw new ValidationError(
          'csr',
          'the CSR must carry the TLS channel binding in challengePassword',
          'channel-binding-required',
        );
      }
      return;
    }
    const presented = Buffer.from(csr.challengePassword, 'base64');
    if (!binding || presented.length !== binding.value.length || !timingSafeEqual(presented, binding.value)) {
      throw new ValidationError(
        'csr',
        `the challengePassword does not match this connection's ${binding?.type ?? 'channel binding'}`,
        'channel-binding-mismatch',
      );
    }
  }

  /** Signs the profile's certificate; done before the transaction so no lock waits on the signer. */
  private issue(csr: ParsedCsr, device: Device, commitment: string, now: Date) {
    return this.ca.issueDeviceCertificate({
      csr,
      deviceId: device.deviceId,
      cdiCommitment: commitment,
      validityDays: this.settings.certificateValidityDays,
      now,
    });
  }

  private recordCertificate(
    tx: Tx,
    device: Device,
    issued: IssuedCertificate,
    tokenId: string | null,
  ): DeviceCertificate {
    const certificate = this.certificateRow(device, issued, tokenId);
    tx.em.persist(certificate);
    return certificate;
  }

  private certificateRow(
    device: Device,
    issued: IssuedCertificate,
    tokenId: string | null,
  ): DeviceCertificate {
    return Object.assign(new DeviceCertificate(), {
      id: randomUUID(),
      deviceRef: device.id,
      serialHex: issued.serialHex,
      fingerprintSha256: issued.fingerprintSha256,
      spkiSha256: issued.spkiSha256,
      pem: issued.pem,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      issuedAt: this.clock.now(),
      enrollmentTokenId: tokenId,
    });
  }

  private emitChanged(tx: Tx, device: Device, change: string, previous: string | null, actor: string): void {
    tx.emit(
      'device.changed',
      deviceChanged(device, { change, previousStatus: previous, actor, reason: null, at: this.clock.now() }),
    );
  }

  private async auditRefusal(
    em: EntityManager,
    error: unknown,
    action: string,
    subject: string,
    address: string,
  ): Promise<void> {
    if (!(error instanceof DomainError)) return;
    await this.transactions.run(em.fork(), (tx) =>
      this.audit.record(tx, {
        actor: `${subject}@${address}`,
        action,
        subject,
        details: { reason: error.reason, message: error.message },
      }),
    );
  }
}
