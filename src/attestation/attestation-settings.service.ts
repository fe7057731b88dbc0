import type { EntityManager } from '@mikro-orm/postgresql';
import { z } from 'zod';
import type { AuditService } from '../audit/audit.service.js';
import type { Clock } from '../shared/clock.js';
import { ForbiddenError, ValidationError } from '../shared/errors.js';
import type { TransactionRunner } from '../shared/transaction.js';
import {
  AttestationSettingsVersion,
  DEFAULT_ATTESTATION_SETTINGS,
  type AttestationSettingsValues,
} from './attestation-settings.entity.js';

const seconds = (min: number, max: number) => z.number().int().min(min).max(max);

const settingsSchema = z
  .object({
    nonce_size: z.number().int().min(16, 'below 16 bytes a nonce can be guessed or collide').max(64),
    challenge_interval_critical_s: seconds(10, 86_400),
    challenge_interval_standard_s: seconds(10, 86_400),
    allowed_clock_skew_s: seconds(0, 300),
    attestation_timeout_s: seconds(1, 600),
    failure_threshold: z.number().int().min(1).max(100),
  })
  .superRefine((values, context) => {
    // A timeout longer than an interval would leave two challenges open for one device.
    const shortest = Math.min(values.challenge_interval_critical_s, values.challenge_interval_standard_s);
    if (values.attestation_timeout_s >= shortest) {
      context.addIssue({
        code: 'custom',
        path: ['attestation_timeout_s'],
        message: 'must be shorter than every challenge interval',
      });
    }
  });

export type SettingsPatch = {
  [K in keyof AttestationSettingsValues]?: AttestationSettingsValues[K] | undefined;
};

export interface VersionedSettings {
  version: number;
  values: AttestationSettingsValues;
  changedBy: string;
  reason: string | null;
  createdAt: Date;
}

/** Which direction of change weakens security, per setting. */
const WEAKER_WHEN: Record<keyof AttestationSettingsValues, 'lower' | 'higher'> = {
  nonce_size: 'lower',
  challenge_interval_critical_s: 'higher',
  challenge_interval_standard_s: 'higher',
  allowed_clock_skew_s: 'higher',
  attestation_timeout_s: 'higher',
  failure_threshold: 'higher',
};

/**
 * Runtime attestation settings: versioned rows in the database, so every instance applies the same
 * values from its next challenge on, with no restart, and every change is audited with before/after.
 */
export class AttestationSettingsService {
  /** The last version read: versions are immutable, so a copy stays right while the version does. */
  #known: VersionedSettings | undefined;

  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  async current(em: EntityManager): Promise<VersionedSettings> {
    const [latest] = await em.find(
      AttestationSettingsVersion,
      {},
      { orderBy: { version: 'desc' }, limit: 1 },
    );
    if (!latest) {
      return {
        version: 0,
        values: DEFAULT_ATTESTATION_SETTINGS,
        changedBy: 'defaults',
        reason: null,
        createdAt: new Date(0),
      };
    }
    return { ...latest, values: { ...DEFAULT_ATTESTATION_SETTINGS, ...latest.values } };
  }

  /**
   * The settings of `version`, the one in force as the caller just read it (the hot path reads the
   * version alongside its own rows instead of a query of its own): from memory unless it changed.
   */
  async atVersion(em: EntityManager, version: number): Promise<VersionedSettings> {
    if (this.#known?.version !== version) this.#known = await this.current(em);
    return this.#known;
  }

  /**
   * Applies a patch. A change that weakens security (smaller nonce, longer interval, larger skew or
   * timeout, higher threshold) needs an admin and a stated reason, so it is a decision, not an accident.
   */
  async update(
    em: EntityManager,
    patch: SettingsPatch,
    caller: { actor: string; isAdmin: boolean },
    reason: string | undefined,
  ): Promise<VersionedSettings> {
    return this.transactions.run(em, async (tx) => {
      // Serialise writers so two changes cannot both become version n+1.
      await tx.em
        .getConnection()
        .execute(
          'lock table attestation_settings in share row exclusive mode',
          [],
          'run',
          tx.em.getTransactionContext(),
        );
      const before = await this.current(tx.em);
      const candidate = { ...before.values, ...definedOnly(patch) };
      const parsed = settingsSchema.safeParse(candidate);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new ValidationError(issue.path.join('.') || 'settings', issue.message);
      }
      const after = parsed.data;
      const weakened = (Object.keys(WEAKER_WHEN) as Array<keyof AttestationSettingsValues>).filter((key) =>
        WEAKER_WHEN[key] === 'lower' ? after[key] < before.values[key] : after[key] > before.values[key],
      );
      const why = reason?.trim() || null;
      if (weakened.length > 0 && !caller.isAdmin) {
        throw new ForbiddenError(
          `weakening ${weakened.join(', ')} needs the admin role`,
          'weakening-needs-admin',
        );
      }
      if (weakened.length > 0 && (!why || why.length < 3)) {
        throw new ValidationError(
          'reason',
          `weakening ${weakened.join(', ')} needs a reason`,
          'weakening-needs-reason',
        );
      }
      const unchanged = (Object.keys(WEAKER_WHEN) as Array<keyof AttestationSettingsValues>).every(
        (key) => after[key] === before.values[key],
      );
      if (unchanged) return before;
      const row = Object.assign(new AttestationSettingsVersion(), {
        version: before.version + 1,
        values: after,
        changedBy: caller.actor,
        reason: why,
        createdAt: this.clock.now(),
      });
      tx.em.persist(row);
      await tx.em.flush();
      await this.audit.record(tx, {
        actor: caller.actor,
        action: 'settings.attestation.updated',
        subject: 'settings:cps_attestation',
        details: { version: row.version, before: before.values, after, weakened, reason: why },
      });
      return { ...row };
    });
  }
}

function definedOnly(patch: SettingsPatch): SettingsPatch {
  return Object.fromEntries(
    Object.entries(patch).filter(([, value]) => value !== undefined && value !== null),
  );
}
