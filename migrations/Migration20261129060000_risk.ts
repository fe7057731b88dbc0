import { Migration } from '@mikro-orm/migrations';

export class Migration20261129060000_risk extends Migration {
  override up(): void {
    this.addSql(`
      create table "policy_bundle" (
        "id" uuid primary key,
        "device_type" varchar(16) not null,
        "version" integer not null check ("version" > 0),
        "document" jsonb not null,
        "published_at" timestamptz(3) not null,
        "published_by" varchar(200) not null,
        "digest" varchar(64) not null,
        unique ("device_type", "version")
      );`);
    this.addSql(`
      create table "risk_factor" (
        "seq" bigserial primary key,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "device_id" varchar(64) not null,
        "kind" varchar(32) not null
          check ("kind" in ('FIRMWARE_DRIFT', 'TELEMETRY_ANOMALY', 'IOC_HIT', 'ATTESTATION')),
        "severity" varchar(16) not null check ("severity" in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
        "source" varchar(200) not null,
        "detail" varchar(1000) not null,
        "weight" double precision not null,
        "contribution" double precision not null,
        "observed_at" timestamptz(3) not null,
        "recorded_at" timestamptz(3) not null,
        "decays" boolean not null,
        "cleared_at" timestamptz(3) null,
        "dedup_key" varchar(300) null,
        "bundle_version" integer null
      );`);
    // The trail, newest first, and the factors that still count.
    this.addSql(`create index "risk_factor_device_idx" on "risk_factor" ("device_ref", "seq");`);
    this.addSql(
      `create index "risk_factor_active_idx" on "risk_factor" ("device_ref", "observed_at") where "cleared_at" is null;`,
    );
    // One factor per decided challenge and kind, however often its event is replayed.
    this.addSql(
      `create unique index "risk_factor_challenge_idx" on "risk_factor" ("device_ref", "dedup_key") where "dedup_key" like 'challenge:%';`,
    );
    this.addSql(
      `create index "risk_factor_dedup_idx" on "risk_factor" ("device_ref", "dedup_key", "observed_at");`,
    );
    this.addSql(`
      create table "risk_history" (
        "seq" bigserial primary key,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "at" timestamptz(3) not null,
        "score" smallint not null,
        "band" varchar(16) not null,
        "bundle_version" integer null,
        "bundle_stale" boolean not null,
        "cause" varchar(64) not null
      );`);
    this.addSql(`create index "risk_history_device_idx" on "risk_history" ("device_ref", "at");`);
    // The background pass finds devices whose score must fade, or whose bundle changed.
    this.addSql(
      `create index "device_risk_decay_idx" on "device" ("risk_scored_at") where "risk_score" > 0;`,
    );
    this.addSql(`create index "device_type_bundle_idx" on "device" ("type", "policy_bundle_version");`);
    this.addSql(`create index "device_risk_score_idx" on "device" ("risk_score" desc, "id");`);
    this.addSql(`create index "device_risk_band_idx" on "device" ("risk_band", "id");`);
  }

  override down(): void {
    this.addSql(`drop index if exists "device_risk_band_idx";`);
    this.addSql(`drop index if exists "device_risk_score_idx";`);
    this.addSql(`drop index if exists "device_type_bundle_idx";`);
    this.addSql(`drop index if exists "device_risk_decay_idx";`);
    this.addSql(`drop table if exists "risk_history";`);
    this.addSql(`drop table if exists "risk_factor";`);
    this.addSql(`drop table if exists "policy_bundle";`);
  }
}
