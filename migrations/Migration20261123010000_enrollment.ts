import { Migration } from '@mikro-orm/migrations';

export class Migration20261123010000_enrollment extends Migration {
  override up(): void {
    this.addSql(`
      create table "enrollment_group" (
        "id" uuid primary key,
        "name" varchar(200) not null unique,
        "chain_pems" jsonb not null,
        "representative_fingerprint" varchar(64) not null unique,
        "allow_common_names" jsonb not null default '[]',
        "deny_common_names" jsonb not null default '[]',
        "default_device_type" varchar(16) not null,
        "default_criticality" varchar(16) not null,
        "default_site_id" varchar(64) null,
        "auto_approve" boolean not null default false,
        "created_at" timestamptz(3) not null,
        "updated_at" timestamptz(3) not null
      );`);
    this.addSql(`
      create table "device" (
        "id" uuid primary key,
        "device_id" varchar(64) not null unique,
        "type" varchar(16) not null check ("type" in ('PLC', 'RTU', 'HMI', 'IP_CAM', 'GATEWAY', 'SENSOR', 'OTHER')),
        "model" varchar(200) null,
        "site_id" varchar(64) null,
        "criticality" varchar(16) not null check ("criticality" in ('critical', 'standard')),
        "expected_cdi_commitment" varchar(71) null,
        "expected_spki_sha256" varchar(64) null,
        "golden_firmware_hash" varchar(71) null,
        "cdi_commitment" varchar(71) null,
        "firmware_version" varchar(100) null,
        "firmware_hash" varchar(71) null,
        "attestation_status" varchar(16) not null check ("attestation_status" in ('PENDING', 'VERIFIED', 'FAILED', 'REVOKED')),
        "enrollment_state" varchar(16) not null check ("enrollment_state" in ('REGISTERED', 'ENROLLED', 'APPROVED', 'REJECTED', 'REVOKED')),
        "enrollment_group_id" uuid null references "enrollment_group" ("id") on delete set null,
        "next_challenge_at" timestamptz(3) null,
        "registered_at" timestamptz(3) not null,
        "updated_at" timestamptz(3) not null,
        "version" integer not null default 1
      );`);
    this.addSql(`create index "device_attestation_status_idx" on "device" ("attestation_status");`);
    this.addSql(`create index "device_site_idx" on "device" ("site_id");`);
    this.addSql(
      `create index "device_next_challenge_idx" on "device" ("next_challenge_at") where "next_challenge_at" is not null;`,
    );
    this.addSql(`
      create table "enrollment_token" (
        "id" uuid primary key,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "token_hash" varchar(64) not null unique,
        "cdi_commitment" varchar(71) null,
        "firmware_version" varchar(100) null,
        "firmware_hash" varchar(71) null,
        "state" varchar(16) not null check ("state" in ('OUTSTANDING', 'CONSUMED', 'REPLACED')),
        "issued_at" timestamptz(3) not null,
        "expires_at" timestamptz(3) not null,
        "issued_by" varchar(200) not null,
        "consumed_at" timestamptz(3) null,
        "certificate_id" uuid null,
        "csr_spki_sha256" varchar(64) null
      );`);
    // At most one outstanding token per device, enforced by the database itself.
    this.addSql(
      `create unique index "enrollment_token_one_outstanding" on "enrollment_token" ("device_ref") where "state" = 'OUTSTANDING';`,
    );
    this.addSql(`
      create table "device_certificate" (
        "id" uuid primary key,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "serial_hex" varchar(40) not null unique,
        "fingerprint_sha256" varchar(64) not null unique,
        "spki_sha256" varchar(64) not null,
        "pem" text not null,
        "not_before" timestamptz(3) not null,
        "not_after" timestamptz(3) not null,
        "status" varchar(16) not null check ("status" in ('ACTIVE', 'SUPERSEDED', 'REVOKED')),
        "issued_at" timestamptz(3) not null,
        "revoked_at" timestamptz(3) null,
        "revocation_reason" integer null,
        "enrollment_token_id" uuid null references "enrollment_token" ("id") on delete set null
      );`);
    this.addSql(
      `create index "device_certificate_device_idx" on "device_certificate" ("device_ref", "issued_at");`,
    );
    this.addSql(
      `create unique index "device_certificate_one_active" on "device_certificate" ("device_ref") where "status" = 'ACTIVE';`,
    );
    this.addSql(
      `create index "device_certificate_revoked_idx" on "device_certificate" ("not_after") where "status" = 'REVOKED';`,
    );
    this.addSql(`
      create table "crl" (
        "id" integer primary key check ("id" = 1),
        "crl_number" bigint not null,
        "this_update" timestamptz(3) not null,
        "next_update" timestamptz(3) not null,
        "der" bytea not null
      );`);
    this.addSql(`create sequence "case_number_seq" start 1;`);
    this.addSql(`
      create table "case_record" (
        "id" uuid primary key,
        "number" integer not null unique default nextval('case_number_seq'),
        "title" varchar(300) not null,
        "severity" varchar(16) not null check ("severity" in ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
        "status" varchar(16) not null check ("status" in ('OPEN', 'INVESTIGATING', 'RESOLVED', 'CLOSED')),
        "source" varchar(32) not null,
        "device_ref" uuid null references "device" ("id") on delete set null,
        "evidence" jsonb not null default '{}',
        "opened_at" timestamptz(3) not null,
        "updated_at" timestamptz(3) not null
      );`);
    this.addSql(`create index "case_record_device_idx" on "case_record" ("device_ref", "status");`);
    this.addSql(`
      create table "rate_limit_window" (
        "key" varchar(200) primary key,
        "window_start" timestamptz(3) not null,
        "count" integer not null
      );`);
  }

  override down(): void {
    for (const table of [
      'rate_limit_window',
      'case_record',
      'crl',
      'device_certificate',
      'enrollment_token',
      'device',
      'enrollment_group',
    ]) {
      this.addSql(`drop table if exists "${table}";`);
    }
    this.addSql(`drop sequence if exists "case_number_seq";`);
  }
}
