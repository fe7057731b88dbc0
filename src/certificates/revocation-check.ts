import type { EntityManager } from '@mikro-orm/postgresql';
import { Device } from '../devices/device.entity.js';
import { DeviceCertificate } from './device-certificate.entity.js';

/**
 * Whether a presented certificate may still be used to connect: not revoked, not superseded, and its
 * device not revoked or rejected. Asked by the broker at every connection (no cache: a revocation
 * committed by any instance takes effect at the next connect). Certificates the table does not know
 * (the service's own) are judged by their chain alone.
 */
export async function isCertificateBarred(em: EntityManager, fingerprintSha256: string): Promise<boolean> {
  const certificate = await em.findOne(DeviceCertificate, { fingerprintSha256 });
  if (!certificate) return false;
  if (certificate.status !== 'ACTIVE') return true;
  const device = await em.findOne(Device, { id: certificate.deviceRef });
  return !device || device.enrollmentState === 'REVOKED' || device.enrollmentState === 'REJECTED';
}
