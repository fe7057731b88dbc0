import type { EntityManager } from '@mikro-orm/postgresql';
import type { CertificateAuthority } from '../pki/index.js';
import type { Clock } from '../shared/clock.js';
import { CrlRecord } from './crl.entity.js';
import { DeviceCertificate } from './device-certificate.entity.js';

/** How long a CRL is valid; it is re-signed well before, on demand, so relying parties never see it lapse. */
const CRL_VALIDITY_MS = 24 * 3_600_000;
const CRL_REFRESH_BEFORE_MS = 6 * 3_600_000;

/**
 * The issuing CA's CRL. Published inside the transaction that revokes, so a committed revocation is
 * always on the CRL every instance serves, and the CRL number grows with each publication.
 */
export class CrlService {
  constructor(
    private readonly ca: CertificateAuthority,
    private readonly clock: Clock,
  ) {}

  /** Re-signs the CRL from the certificate table. `em` should be transactional. */
  async publish(em: EntityManager): Promise<CrlRecord> {
    const now = this.clock.now();
    // Serialise publishers: the row lock orders CRL numbers across instances.
    const [locked] = await em
      .getConnection()
      .execute<{ crl_number: string }[]>(
        'select crl_number from crl where id = 1 for update',
        [],
        'all',
        em.getTransactionContext(),
      );
    const revoked = await em.find(
      DeviceCertificate,
      // Expired certificates leave the CRL (RFC 5280 3.3): they are invalid anyway.
      { status: 'REVOKED', notAfter: { $gt: now } },
      { orderBy: { revokedAt: 'asc' } },
    );
    const crlNumber = locked ? BigInt(locked.crl_number) + 1n : 1n;
    const nextUpdate = new Date(now.getTime() + CRL_VALIDITY_MS);
    const der = await this.ca.createCrl({
      revoked: revoked.map((certificate) => ({
        serialHex: certificate.serialHex,
        revokedAt: certificate.revokedAt ?? now,
        reasonCode: certificate.revocationReason ?? 0,
      })),
      thisUpdate: now,
      nextUpdate,
      crlNumber,
    });
    const record = (await em.findOne(CrlRecord, { id: 1 })) ?? em.create(CrlRecord, {} as CrlRecord);
    record.id = 1;
    record.crlNumber = crlNumber.toString();
    record.thisUpdate = now;
    record.nextUpdate = nextUpdate;
    record.der = der;
    em.persist(record);
    await em.flush();
    return record;
  }

  /** The CRL to serve: the stored one, or a fresh one when none exists or it is close to expiry. */
  async current(em: EntityManager): Promise<CrlRecord> {
    const record = await em.findOne(CrlRecord, { id: 1 });
    if (record && record.nextUpdate.getTime() - this.clock.now().getTime() > CRL_REFRESH_BEFORE_MS)
      return record;
    return em.transactional((tx) => this.publish(tx));
  }
}
