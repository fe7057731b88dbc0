import { Migration } from '@mikro-orm/migrations';

export class Migration20261123000000_platform extends Migration {
  override up(): void {
    this.addSql(`
      create table "audit_event" (
        "seq" bigint primary key,
        "occurred_at" timestamptz(3) not null,
        "actor" varchar(200) not null,
        "action" varchar(100) not null,
        "subject" varchar(300) not null,
        "details" jsonb not null,
        "prev_hash" varchar(64) not null,
        "hash" varchar(64) not null
      );`);
    this.addSql(`create index "audit_event_action_idx" on "audit_event" ("action", "seq");`);
    this.addSql(`
      create table "api_token" (
        "id" uuid primary key,
        "name" varchar(200) not null,
        "role" varchar(32) not null check ("role" in ('viewer', 'operator', 'facilities', 'integration', 'admin')),
        "token_hash" varchar(64) not null unique,
        "created_at" timestamptz(3) not null,
        "expires_at" timestamptz(3) null,
        "revoked_at" timestamptz(3) null
      );`);
  }

  override down(): void {
    this.addSql(`drop table if exists "api_token";`);
    this.addSql(`drop table if exists "audit_event";`);
  }
}
