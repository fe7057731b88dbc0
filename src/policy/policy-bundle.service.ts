import { createHash, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import type { DeviceType } from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import { canonicalJson } from '../shared/jcs.js';
import type { TransactionRunner } from '../shared/transaction.js';
import { PolicyBundle } from './policy-bundle.entity.js';
import {
  DEFAULT_POLICY,
  parsePolicyBundleDocument,
  type PolicyBundleDocument,
} from './policy-bundle.document.js';

/** The policy that applies to a device type now: a published bundle, or the built-in default. */
export interface EffectivePolicy {
  document: PolicyBundleDocument;
  /** Null for the built-in default. */
  bundle: PolicyBundle | null;
  stale: boolean;
}

/**
 * How long an instance may use its copy of the current bundles. Bundles change rarely and every
 * instance rereads them within this time, so a publication applies fleet-wide without a restart
 * and without a per-attestation query.
 */
const CACHE_TTL_MS = 5_000;
const DAY_MS = 86_400_000;

export class PolicyBundleService {
  #cache: { loadedAt: number; byType: Map<DeviceType, PolicyBundle> } | null = null;

  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  /** Validates and stores the next version for the type; earlier versions stay as they were. */
  async publish(
    em: EntityManager,
    deviceType: DeviceType,
    input: unknown,
    actor: string,
  ): Promise<PolicyBundle> {
    const document = parsePolicyBundleDocument(input);
    const bundle = await this.transactions.run(em, async (tx) => {
      // Serialises publishers of one type (across instances) so versions never collide.
      await tx.em
        .getConnection()
        .execute(
          `select pg_advisory_xact_lock(hashtext('policy_bundle:' || ?))`,
          [deviceType],
          'run',
          tx.em.getTransactionContext(),
        );
      const previous = await tx.em.findOne(PolicyBundle, { deviceType }, { orderBy: { version: 'desc' } });
      const record = Object.assign(new PolicyBundle(), {
        id: randomUUID(),
        deviceType,
        version: (previous?.version ?? 0) + 1,
        document,
        publishedAt: this.clock.now(),
        publishedBy: actor,
        digest: createHash('sha256').update(canonicalJson(document)).digest('hex'),
      });
      tx.em.persist(record);
      await tx.em.flush();
      await this.audit.record(tx, {
        actor,
        action: 'policy.published',
        subject: `policy:${deviceType}`,
        details: {
          version: record.version,
          previousVersion: previous?.version ?? null,
          digest: record.digest,
        },
      });
      tx.emit('policy.published', { deviceType, version: record.version });
      return record;
    });
    this.#cache = null;
    return bundle;
  }

  async history(em: EntityManager, deviceType: DeviceType): Promise<PolicyBundle[]> {
    return em.find(PolicyBundle, { deviceType }, { orderBy: { version: 'desc' } });
  }

  /** The current bundle of every type that has one. */
  async currentBundles(em: EntityManager): Promise<ReadonlyMap<DeviceType, PolicyBundle>> {
    const now = this.clock.now().getTime();
    if (this.#cache && now - this.#cache.loadedAt < CACHE_TTL_MS && now >= this.#cache.loadedAt) {
      return this.#cache.byType;
    }
    // In the caller's transaction when there is one: a second connection would wait for it on the
    // embedded database (one backend session) while the transaction waits for this answer.
    const rows = await em
      .getConnection()
      .execute<{ id: string }[]>(
        `select distinct on (device_type) id from policy_bundle order by device_type, version desc`,
        [],
        'all',
        em.getTransactionContext(),
      );
    const bundles = rows.length
      ? await em.find(PolicyBundle, { id: { $in: rows.map((row) => row.id) } }, { disableIdentityMap: true })
      : [];
    const byType = new Map(bundles.map((bundle) => [bundle.deviceType, bundle]));
    this.#cache = { loadedAt: now, byType };
    return byType;
  }

  async effective(em: EntityManager, deviceType: DeviceType): Promise<EffectivePolicy> {
    const bundle = (await this.currentBundles(em)).get(deviceType) ?? null;
    return bundle
      ? { document: bundle.document, bundle, stale: this.isStale(bundle) }
      : { document: DEFAULT_POLICY, bundle: null, stale: false };
  }

  isStale(bundle: PolicyBundle): boolean {
    return this.clock.now().getTime() - bundle.publishedAt.getTime() > bundle.document.maxAgeDays * DAY_MS;
  }
}
