import { Migration } from '@mikro-orm/migrations';

export class Migration20261123020000_attestation extends Migration {
  override up(): void {
    this.addSql(`
      alter table "device"
        add column "consecutive_failures" integer not null default 0,
        add column "last_counter" bigint null,
        add column "last_attestation_at" timestamptz(3) null,
        add column "failure_kind" varchar(16) null check ("failure_kind" in ('CHECK_FAILED', 'UNRESPONSIVE'));`);
    this.addSql(`
      create table "attestation_settings" (
        "version" integer primary key,
        "values" jsonb not null,
        "changed_by" varchar(200) not null,
        "reason" varchar(500) null,
        "created_at" timestamptz(3) not null
      );`);
    this.addSql(`
      create table "attestation_challenge" (
        "id" uuid primary key,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "device_id" varchar(64) not null,
        "nonce" varchar(256) not null,
        "issued_at" timestamptz(3) not null,
        "deadline_at" timestamptz(3) not null,
        "state" varchar(16) not null check ("state" in ('OPEN', 'ANSWERED', 'TIMED_OUT')),
        "response_hash" varchar(64) null,
        "decided_at" timestamptz(3) null
      );`);
    // The timeout sweep reads only open challenges, by deadline.
    this.addSql(
      `create index "attestation_challenge_open_idx" on "attestation_challenge" ("deadline_at") where "state" = 'OPEN';`,
    );
    this.addSql(
      `create index "attestation_challenge_device_idx" on "attestation_challenge" ("device_ref", "issued_at");`,
    );
    this.addSql(`
      create table "attestation_result" (
        "seq" bigserial primary key,
        "challenge_id" uuid not null references "attestation_challenge" ("id") on delete cascade,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "device_id" varchar(64) not null,
        "outcome" varchar(8) not null check ("outcome" in ('PASS', 'FAIL', 'TIMEOUT')),
        "reasons" jsonb not null default '[]',
        "nonce_match" boolean null,
        "cert_chain_valid" boolean null,
        "signature_valid" boolean null,
        "firmware_hash" varchar(71) null,
        "timestamp" timestamptz(3) null,
        "received_at" timestamptz(3) null,
        "latency_ms" integer null,
        "risk_score" integer null,
        "status" varchar(16) not null,
        "decided_at" timestamptz(3) not null
      );`);
    this.addSql(
      `create index "attestation_result_device_idx" on "attestation_result" ("device_ref", "seq");`,
    );
    // One decision per challenge; only a REPLAYED_RESPONSE failure may follow it.
    this.addSql(
      `create unique index "attestation_result_one_decision" on "attestation_result" ("challenge_id") where not ("reasons" ? 'REPLAYED_RESPONSE');`,
    );
    this.addSql(`create index "attestation_result_outcome_idx" on "attestation_result" ("outcome", "seq");`);
  }

  override down(): void {
    this.addSql(`drop table if exists "attestation_result";`);
    this.addSql(`drop table if exists "attestation_challenge";`);
    this.addSql(`drop table if exists "attestation_settings";`);
    this.addSql(`
      alter table "device"
        drop column "consecutive_failures",
        drop column "last_counter",
        drop column "last_attestation_at",
        drop column "failure_kind";`);
  }
}
