import { Migration } from '@mikro-orm/migrations';

/**
 * Idempotency keys of GraphQL mutations, per token: the first request's fingerprint and, once it has
 * finished, its response (sealed with a key derived from the caller's token, which is not stored).
 */
export class Migration20261129020000_idempotency_keys extends Migration {
  override up(): void {
    this.addSql(`
      create table "idempotency_key" (
        "token_id" uuid not null references "api_token" ("id") on delete cascade,
        "key" varchar(200) not null,
        "fingerprint" char(64) not null,
        "created_at" timestamptz(3) not null,
        "expires_at" timestamptz(3) not null,
        "completed_at" timestamptz(3) null,
        "response" bytea null,
        primary key ("token_id", "key")
      );`);
    // The sweep deletes expired keys oldest first.
    this.addSql(`create index "idempotency_key_expiry_idx" on "idempotency_key" ("expires_at");`);
  }

  override down(): void {
    this.addSql(`drop table if exists "idempotency_key";`);
  }
}
