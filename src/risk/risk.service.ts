import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import type { CaseService } from '../cases/case.service.js';
import type { AttestationStatus, DeviceType, EnrollmentState, RiskBand } from '../devices/device.entity.js';
import { deviceChanged } from '../devices/device-events.js';
import type { Metrics } from '../observability/metrics.js';
import { firmwareDrift } from '../policy/firmware-policy.js';
import type { RiskFactorKind, Severity } from '../policy/policy-bundle.document.js';
import type { EffectivePolicy, PolicyBundleService } from '../policy/policy-bundle.service.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import type { Clock } from '../shared/clock.js';
import { DeviceNotFoundError, RateLimitedError, ValidationError } from '../shared/errors.js';
import type { AttestationDecidedEvent } from '../shared/events.js';
import type { TransactionRunner, Tx } from '../shared/transaction.js';
import { RiskFactor } from './risk-factor.entity.js';
import { bandOf, contributionAt, scoreOf, type ScoredFactor } from './risk-score.js';
import { ruleBreaches, telemetryMetrics } from './telemetry-rules.js';

export interface RiskSettings {
  /** A repeat of the same report (indicator, anomaly kind, telemetry rule) within this window is a no-op. */
  duplicateWindowMs: number;
  /** How stale a non-zero score may get before the background pass applies decay to it. */
  decayIntervalMs: number;
}

export const DEFAULT_RISK_SETTINGS: RiskSettings = {
  duplicateWindowMs: 3_600_000,
  decayIntervalMs: 300_000,
};

/** The device columns scoring reads, fetched (and row-locked) in one statement. */
interface DeviceRiskRow {
  id: string;
  device_id: string;
  type: DeviceType;
  model: string | null;
  firmware_hash: string | null;
  golden_firmware_hash: string | null;
  site_id: string | null;
  risk_score: number;
  risk_band: RiskBand;
  attestation_status: AttestationStatus;
  enrollment_state: EnrollmentState;
  consecutive_failures: number;
  failure_kind: string | null;
  policy_bundle_version: number | null;
}

const ROW_COLUMNS = `id, device_id, type, model, firmware_hash, golden_firmware_hash, site_id, risk_score,
  risk_band, attestation_status, enrollment_state, consecutive_failures, failure_kind,
  policy_bundle_version`;

interface NewFactor {
  kind: RiskFactorKind;
  severity: Severity;
  source: string;
  detail: string;
  observedAt: Date;
  decays: boolean;
  dedupKey: string;
}

export interface RiskAssessment {
  deviceId: string;
  score: number;
  band: RiskBand;
  /** The factors this call added to the trail (none when it was a duplicate). */
  added: RiskFactor[];
  duplicate: boolean;
}

export type TelemetryDisposition = 'accepted' | 'anomaly' | 'unknown-device' | 'malformed';

/** Beyond this many half-lives a factor contributes under 0.0001% of its weight: not worth reading. */
const NEGLIGIBLE_AFTER_HALF_LIVES = 20;

/**
 * The risk score: factors in, a 0-100 score and band out, with the trail that drove it. Every path
 * that changes a device's factors goes through `rescoreLocked`, under the device's row lock, so two
 * reports for one device (from two instances) are scored one after the other, never interleaved.
 */
export class RiskService {
  constructor(
    private readonly policies: PolicyBundleService,
    private readonly cases: CaseService,
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly rateLimiter: RateLimiter,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    private readonly settings: RiskSettings = DEFAULT_RISK_SETTINGS,
  ) {}

  /** An indicator of compromise from threat intelligence or a SIEM. */
  async reportIocHit(
    em: EntityManager,
    input: { deviceId: string; indicator: string; source: string; severity: Severity; observedAt: Date },
    actor: string,
  ): Promise<RiskAssessment> {
    const indicator = requireText('indicator', input.indicator, 500);
    const source = requireText('source', input.source, 150);
    this.requireNotFuture(input.observedAt);
    return this.report(em, input.deviceId, actor, {
      kind: 'IOC_HIT',
      severity: input.severity,
      source: `${source} (${actor})`,
      detail: `indicator of compromise ${indicator} reported by ${source}`,
      observedAt: input.observedAt,
      decays: true,
      dedupKey: `ioc:${indicator}`,
    });
  }

  /** An anomaly an external detector saw in the device's behaviour. */
  async reportTelemetryAnomaly(
    em: EntityManager,
    input: { deviceId: string; kind: string; severity: Severity; detail: string },
    actor: string,
  ): Promise<RiskAssessment> {
    const kind = requireText('kind', input.kind, 100);
    const detail = requireText('detail', input.detail, 800);
    return this.report(em, input.deviceId, actor, {
      kind: 'TELEMETRY_ANOMALY',
      severity: input.severity,
      source: actor,
      detail: `${kind}: ${detail}`,
      observedAt: this.clock.now(),
      decays: true,
      dedupKey: `anomaly:${kind}`,
    });
  }

  /**
   * A telemetry message from the device, checked against its bundle's rules and message rate. The
   * common case (nothing broken) costs a read and the rate counter, no transaction.
   */
  async ingestTelemetry(em: EntityManager, deviceId: string, payload: Buffer): Promise<TelemetryDisposition> {
    const metrics = telemetryMetrics(payload);
    const [row] = await em
      .getConnection()
      .execute<DeviceRiskRow[]>(`select ${ROW_COLUMNS} from device where device_id = ?`, [deviceId]);
    if (!row) return 'unknown-device';
    if (!metrics) return 'malformed';
    const policy = await this.policies.effective(em, row.type);
    const now = this.clock.now();
    const breaches: NewFactor[] = ruleBreaches(policy.document.telemetry.rules, metrics).map((breach) => ({
      kind: 'TELEMETRY_ANOMALY',
      severity: breach.rule.severity,
      source: 'telemetry',
      detail: `${breach.detail} (${policyName(row.type, policy)})`,
      observedAt: now,
      decays: true,
      dedupKey: `telemetry:${breach.rule.metric}`,
    }));
    try {
      await this.rateLimiter.hit(em, `telemetry:${deviceId}`, {
        limit: policy.document.telemetry.maxMessagesPerMinute,
        windowSeconds: 60,
      });
    } catch (error) {
      if (!(error instanceof RateLimitedError)) throw error;
      breaches.push({
        kind: 'TELEMETRY_ANOMALY',
        severity: 'MEDIUM',
        source: 'telemetry',
        detail: `more than ${policy.document.telemetry.maxMessagesPerMinute} telemetry messages a minute (${policyName(row.type, policy)})`,
        observedAt: now,
        decays: true,
        dedupKey: 'telemetry:rate',
      });
    }
    if (breaches.length === 0) return 'accepted';
    await this.transactions.run(em, async (tx) => {
      const locked = await this.lockDevice(tx, deviceId);
      const fresh = await this.withoutDuplicates(tx, locked.id, breaches);
      if (fresh.length) await this.rescoreLocked(tx, locked, fresh, 'telemetry', 'system:telemetry');
    });
    return 'anomaly';
  }

  /**
   * Folds a decided challenge into the score: a failure is a fading ATTESTATION factor (and a
   * FIRMWARE_DRIFT one when the firmware did not match); timeouts in a row are a state factor that
   * a PASS clears. Replays of the same event add nothing (one factor per challenge and kind).
   */
  async recordAttestation(em: EntityManager, event: AttestationDecidedEvent): Promise<void> {
    // The common case, a PASS for a device with nothing against it, changes nothing: no transaction.
    if (event.outcome === 'PASS' && event.riskScore === 0) return;
    const at = new Date(event.decidedAt);
    const factors: NewFactor[] = [];
    if (event.outcome === 'FAIL') {
      factors.push({
        kind: 'ATTESTATION',
        severity: 'HIGH',
        source: 'attestation',
        detail: `attestation failed: ${event.reasons.join(', ')}`,
        observedAt: at,
        decays: true,
        dedupKey: `challenge:${event.challengeId}:attestation`,
      });
      if (event.reasons.includes('FIRMWARE_MISMATCH')) {
        factors.push({
          kind: 'FIRMWARE_DRIFT',
          severity: 'CRITICAL',
          source: 'attestation',
          detail: `attested firmware ${event.firmwareHash ?? 'none'} does not match the golden value`,
          observedAt: at,
          decays: true,
          dedupKey: `challenge:${event.challengeId}:firmware`,
        });
      }
    }
    await this.transactions.run(em, async (tx) => {
      const row = await this.lockDevice(tx, event.deviceId);
      if (factors.length === 0 && row.risk_score === 0 && row.consecutive_failures === 0) return;
      await this.rescoreLocked(tx, row, factors, 'attestation', 'system:attestation');
    });
  }

  /**
   * The background pass: devices whose bundle changed since they were scored, then non-zero scores
   * not recomputed for `decayIntervalMs`. Claims rows with SKIP LOCKED so instances share the work.
   * Returns how many devices it rescored.
   */
  async rescoreDue(em: EntityManager, batchSize: number): Promise<{ policy: number; decay: number }> {
    let policy = 0;
    for (const [deviceType, bundle] of await this.policies.currentBundles(em)) {
      policy += await this.rescoreClaimed(
        em,
        `type = ? and policy_bundle_version is distinct from ?`,
        [deviceType, bundle.version],
        batchSize,
        'policy',
      );
    }
    const staleBefore = new Date(this.clock.now().getTime() - this.settings.decayIntervalMs);
    const decay = await this.rescoreClaimed(
      em,
      `risk_score > 0 and (risk_scored_at is null or risk_scored_at < ?)`,
      [staleBefore],
      batchSize,
      'decay',
    );
    return { policy, decay };
  }

  /** Devices still scored by an older bundle than their type's current one (the rescoring backlog). */
  async policyBacklog(em: EntityManager): Promise<number> {
    let backlog = 0;
    for (const [deviceType, bundle] of await this.policies.currentBundles(em)) {
      const [row] = await em
        .getConnection()
        .execute<{ count: string }[]>(
          `select count(*) as count from device where type = ? and policy_bundle_version is distinct from ?`,
          [deviceType, bundle.version],
        );
      backlog += Number(row?.count ?? 0);
    }
    return backlog;
  }

  private async rescoreClaimed(
    em: EntityManager,
    where: string,
    params: unknown[],
    batchSize: number,
    cause: string,
  ): Promise<number> {
    return this.transactions.run(em, async (tx) => {
      const rows = await tx.em
        .getConnection()
        .execute<DeviceRiskRow[]>(
          `select ${ROW_COLUMNS} from device where ${where} order by id limit ? for update skip locked`,
          [...params, batchSize],
          'all',
          tx.em.getTransactionContext(),
        );
      for (const row of rows) await this.rescoreLocked(tx, row, [], cause, 'system:risk');
      this.metrics.riskRescored.inc({ cause }, rows.length);
      return rows.length;
    });
  }

  private async report(
    em: EntityManager,
    deviceId: string,
    actor: string,
    factor: NewFactor,
  ): Promise<RiskAssessment> {
    return this.transactions.run(em, async (tx) => {
      const row = await this.lockDevice(tx, deviceId);
      const fresh = await this.withoutDuplicates(tx, row.id, [factor]);
      if (fresh.length === 0) {
        this.metrics.riskDuplicateReports.inc({ kind: factor.kind });
        return { deviceId, score: row.risk_score, band: row.risk_band, added: [], duplicate: true };
      }
      const assessment = await this.rescoreLocked(tx, row, fresh, factor.kind, actor);
      await this.audit.record(tx, {
        actor,
        action: factor.kind === 'IOC_HIT' ? 'risk.ioc-reported' : 'risk.anomaly-reported',
        subject: `device:${deviceId}`,
        details: {
          severity: factor.severity,
          detail: factor.detail,
          observedAt: factor.observedAt.toISOString(),
          score: assessment.score,
          band: assessment.band,
        },
      });
      return assessment;
    });
  }

  private async lockDevice(tx: Tx, deviceId: string): Promise<DeviceRiskRow> {
    const [row] = await tx.em
      .getConnection()
      .execute<DeviceRiskRow[]>(
        `select ${ROW_COLUMNS} from device where device_id = ? for update`,
        [deviceId],
        'all',
        tx.em.getTransactionContext(),
      );
    if (!row) throw new DeviceNotFoundError(deviceId);
    return row;
  }

  /** Drops reports already on the trail within the duplicate window (same device and key). */
  private async withoutDuplicates(tx: Tx, deviceRef: string, factors: NewFactor[]): Promise<NewFactor[]> {
    const since = new Date(this.clock.now().getTime() - this.settings.duplicateWindowMs);
    const recent = await tx.em.getConnection().execute<{ dedup_key: string }[]>(
      `select distinct dedup_key from risk_factor
         where device_ref = ? and dedup_key in (?) and recorded_at >= ?`,
      [deviceRef, factors.map((factor) => factor.dedupKey), since],
      'all',
      tx.em.getTransactionContext(),
    );
    const seen = new Set(recent.map((row) => row.dedup_key));
    return factors.filter((factor) => !seen.has(factor.dedupKey));
  }

  /**
   * Brings the state factors up to date, appends the new ones, recomputes the score and records what
   * changed: device columns, history, the band change in the audit trail, an event for subscribers,
   * and a case when the device is (or stays) CRITICAL with new evidence.
   */
  private async rescoreLocked(
    tx: Tx,
    row: DeviceRiskRow,
    reported: NewFactor[],
    cause: string,
    actor: string,
  ): Promise<RiskAssessment> {
    const now = this.clock.now();
    const policy = await this.policies.effective(tx.em, row.type);
    const connection = tx.em.getConnection();
    const context: unknown = tx.em.getTransactionContext();

    const wanted = this.stateFactors(row, policy, now);
    const active = await connection.execute<{ seq: string; dedup_key: string }[]>(
      `select seq, dedup_key from risk_factor where device_ref = ? and cleared_at is null and not decays`,
      [row.id],
      'all',
      context,
    );
    const wantedKeys = new Set(wanted.map((factor) => factor.dedupKey));
    const activeKeys = new Set(active.map((factor) => factor.dedup_key));
    const ended = active.filter((factor) => !wantedKeys.has(factor.dedup_key)).map((factor) => factor.seq);
    if (ended.length) {
      await connection.execute(
        `update risk_factor set cleared_at = ? where seq in (?)`,
        [now, ended],
        'run',
        context,
      );
    }
    const added = await this.insertFactors(
      tx,
      row,
      [...wanted.filter((factor) => !activeKeys.has(factor.dedupKey)), ...reported],
      policy,
      now,
    );

    const horizon = new Date(
      now.getTime() - NEGLIGIBLE_AFTER_HALF_LIVES * policy.document.risk.halfLifeHours * 3_600_000,
    );
    const current = await connection.execute<
      { kind: RiskFactorKind; severity: Severity; observed_at: Date; decays: boolean }[]
    >(
      `select kind, severity, observed_at, decays from risk_factor
         where device_ref = ? and cleared_at is null and (not decays or observed_at >= ?)`,
      [row.id, horizon],
      'all',
      context,
    );
    const score = scoreOf(
      current.map((factor) => ({
        kind: factor.kind,
        severity: factor.severity,
        observedAt: new Date(factor.observed_at),
        decays: factor.decays,
      })),
      policy.document,
      now,
    );
    const band = bandOf(score);
    const bundleVersion = policy.bundle?.version ?? null;
    await connection.execute(
      `update device set risk_score = ?, risk_band = ?, risk_scored_at = ?, policy_bundle_version = ? where id = ?`,
      [score, band, now, bundleVersion, row.id],
      'run',
      context,
    );
    const scoreChanged = score !== row.risk_score || band !== row.risk_band;
    if (scoreChanged || bundleVersion !== row.policy_bundle_version) {
      await connection.execute(
        `insert into risk_history (device_ref, at, score, band, bundle_version, bundle_stale, cause)
           values (?, ?, ?, ?, ?, ?, ?)`,
        [row.id, now, score, band, bundleVersion, policy.stale, cause],
        'run',
        context,
      );
    }
    if (band !== row.risk_band) {
      await this.audit.record(tx, {
        actor,
        action: 'risk.band-changed',
        subject: `device:${row.device_id}`,
        details: { from: row.risk_band, to: band, score, cause, bundleVersion },
      });
    }
    if (band === 'CRITICAL' && (row.risk_band !== 'CRITICAL' || reported.length > 0)) {
      await this.cases.openOrAppend(tx, {
        title: `Risk score critical for ${row.device_id}`,
        severity: 'CRITICAL',
        source: 'RISK_CRITICAL',
        deviceRef: row.id,
        evidence: {
          score,
          band,
          cause,
          bundleVersion,
          factors: added.map((factor) => ({
            kind: factor.kind,
            severity: factor.severity,
            source: factor.source,
            detail: factor.detail,
            contribution: factor.contribution,
          })),
        },
        actor,
      });
    }
    if (scoreChanged) {
      tx.emit(
        'device.changed',
        deviceChanged(
          {
            deviceId: row.device_id,
            attestationStatus: row.attestation_status,
            enrollmentState: row.enrollment_state,
            siteId: row.site_id,
            riskScore: score,
            riskBand: band,
          },
          {
            change: band !== row.risk_band ? 'risk-band' : 'risk-score',
            previousStatus: row.attestation_status,
            previousRiskBand: row.risk_band,
            actor,
            reason: cause,
            at: now,
          },
        ),
      );
    }
    return { deviceId: row.device_id, score, band, added, duplicate: false };
  }

  /** The factors that hold while a condition lasts: firmware drift, and timeouts in a row. */
  private stateFactors(row: DeviceRiskRow, policy: EffectivePolicy, now: Date): NewFactor[] {
    const factors: NewFactor[] = [];
    const drift = firmwareDrift(policy.document, {
      model: row.model,
      firmwareHash: row.firmware_hash,
      goldenFirmwareHash: row.golden_firmware_hash,
    });
    if (drift) {
      factors.push({
        kind: 'FIRMWARE_DRIFT',
        severity: drift.severity,
        source: 'policy',
        detail: `${drift.detail} (${policyName(row.type, policy)})`,
        observedAt: now,
        decays: false,
        dedupKey: `${drift.key}:${policy.bundle?.version ?? 0}`,
      });
    }
    if (row.consecutive_failures > 0) {
      const unresponsive = row.failure_kind === 'UNRESPONSIVE';
      factors.push({
        kind: 'ATTESTATION',
        severity: unresponsive ? 'HIGH' : 'LOW',
        source: 'attestation',
        detail: unresponsive
          ? 'unresponsive: challenges unanswered up to the failure threshold'
          : 'challenges unanswered in a row, below the failure threshold',
        observedAt: now,
        decays: false,
        dedupKey: `timeouts:${unresponsive ? 'unresponsive' : 'some'}`,
      });
    }
    return factors;
  }

  private async insertFactors(
    tx: Tx,
    row: DeviceRiskRow,
    factors: NewFactor[],
    policy: EffectivePolicy,
    now: Date,
  ): Promise<RiskFactor[]> {
    if (factors.length === 0) return [];
    const values = factors.map((factor) => {
      const scored: ScoredFactor = factor;
      return [
        row.id,
        row.device_id,
        factor.kind,
        factor.severity,
        factor.source.slice(0, 200),
        factor.detail.slice(0, 1000),
        policy.document.risk.weights[factor.kind],
        Math.round(contributionAt(scored, policy.document, now) * 100) / 100,
        factor.observedAt,
        now,
        factor.decays,
        factor.dedupKey,
        policy.bundle?.version ?? null,
      ];
    });
    const inserted = await tx.em.getConnection().execute<{ seq: string }[]>(
      `insert into risk_factor (device_ref, device_id, kind, severity, source, detail, weight, contribution,
           observed_at, recorded_at, decays, dedup_key, bundle_version)
         values ${values.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}
         on conflict (device_ref, dedup_key) where dedup_key like 'challenge:%' do nothing
         returning seq`,
      values.flat(),
      'all',
      tx.em.getTransactionContext(),
    );
    if (inserted.length === 0) return [];
    const rows = await tx.em.find(
      RiskFactor,
      { seq: { $in: inserted.map((entry) => entry.seq) } },
      { orderBy: { seq: 'asc' } },
    );
    for (const factor of rows) this.metrics.riskFactors.inc({ kind: factor.kind, severity: factor.severity });
    return rows;
  }

  private requireNotFuture(observedAt: Date): void {
    // A report from the future would escape decay; a few minutes cover honest clock differences.
    if (observedAt.getTime() > this.clock.now().getTime() + 5 * 60_000) {
      throw new ValidationError('observedAt', 'lies in the future');
    }
  }
}

function policyName(type: DeviceType, policy: EffectivePolicy): string {
  if (!policy.bundle) return `${type} default policy`;
  return `${type} bundle v${policy.bundle.version}${policy.stale ? ', STALE' : ''}`;
}

function requireText(field: string, value: string, max: number): string {
  const text = value.trim();
  if (!text) throw new ValidationError(field, 'must not be empty');
  if (text.length > max) throw new ValidationError(field, `must be at most ${max} characters`);
  return text;
}
