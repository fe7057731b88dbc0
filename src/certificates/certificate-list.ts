import type { FilterQuery } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { plainRowsByKeys, selectList } from '../db/plain-rows.js';
import { DeviceCertificate, type CertificateStatus } from './device-certificate.entity.js';

export interface CertificateListFilter {
  /** Certificates of these device rows only (an empty list matches nothing). */
  deviceRefs?: readonly string[] | undefined;
  statuses?: readonly CertificateStatus[] | undefined;
  /** Only certificates whose validity ends before this instant (renewal planning). */
  expiringBefore?: Date | undefined;
}

/** A position in the issuance order; the id breaks ties between certificates issued in the same ms. */
export interface CertificateKey {
  issuedAt: Date;
  id: string;
}

export interface CertificatePage {
  after?: CertificateKey | undefined;
  before?: CertificateKey | undefined;
  limit: number;
  /** Read towards newer certificates (a `last`/`before` page); the caller restores the order. */
  reversed: boolean;
}

/**
 * Certificates the CA issued, newest first, one keyset page at a time: a page stays correct while new
 * certificates are issued, because issuance only adds keys at the front.
 */
export function listCertificates(
  em: EntityManager,
  filter: CertificateListFilter,
  page: CertificatePage,
): Promise<DeviceCertificate[]> {
  const keyset: Array<FilterQuery<DeviceCertificate>> = [];
  if (page.after) keyset.push(olderThan(page.after));
  if (page.before) keyset.push(newerThan(page.before));
  const direction = page.reversed ? 'asc' : 'desc';
  return em.find(
    DeviceCertificate,
    { $and: [whereOf(filter), ...keyset] },
    { orderBy: { issuedAt: direction, id: direction }, limit: page.limit },
  );
}

/** Every certificate of each device (row ids), newest first, as plain rows for reading. */
export function certificatesOfDevices(
  em: EntityManager,
  deviceRefs: readonly string[],
): Promise<DeviceCertificate[]> {
  return certificatesOf(em, deviceRefs, `order by c."issued_at" desc, c."serial_hex" asc`);
}

/** The ACTIVE certificate of each device (row ids) that has one, as plain rows for reading. */
export function activeCertificatesOf(
  em: EntityManager,
  deviceRefs: readonly string[],
): Promise<DeviceCertificate[]> {
  return certificatesOf(em, deviceRefs, `and c."status" = 'ACTIVE'`);
}

function certificatesOf(
  em: EntityManager,
  deviceRefs: readonly string[],
  rest: string,
): Promise<DeviceCertificate[]> {
  return plainRowsByKeys(
    em,
    DeviceCertificate,
    deviceRefs,
    `select ${selectList(em, DeviceCertificate, 'c')} from "device_certificate" c
      where c."device_ref" in (?) ${rest}`,
  );
}

export function countCertificates(em: EntityManager, filter: CertificateListFilter): Promise<number> {
  return em.count(DeviceCertificate, whereOf(filter));
}

function whereOf(filter: CertificateListFilter): FilterQuery<DeviceCertificate> {
  return {
    ...(filter.deviceRefs !== undefined ? { deviceRef: { $in: [...filter.deviceRefs] } } : {}),
    ...(filter.statuses?.length ? { status: { $in: [...filter.statuses] } } : {}),
    ...(filter.expiringBefore ? { notAfter: { $lt: filter.expiringBefore } } : {}),
  };
}

function olderThan(key: CertificateKey): FilterQuery<DeviceCertificate> {
  return { $or: [{ issuedAt: { $lt: key.issuedAt } }, { issuedAt: key.issuedAt, id: { $lt: key.id } }] };
}

function newerThan(key: CertificateKey): FilterQuery<DeviceCertificate> {
  return { $or: [{ issuedAt: { $gt: key.issuedAt } }, { issuedAt: key.issuedAt, id: { $gt: key.id } }] };
}
