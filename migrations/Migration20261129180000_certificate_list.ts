import { Migration } from '@mikro-orm/migrations';

/** Indexes behind the `certificates` connection: issuance order (its keyset) and expiry planning. */
export class Migration20261129180000_certificate_list extends Migration {
  override up(): void {
    this.addSql(`create index "device_certificate_issued_idx" on "device_certificate" ("issued_at", "id");`);
    this.addSql(`create index "device_certificate_expiry_idx" on "device_certificate" ("not_after");`);
  }

  override down(): void {
    this.addSql(`drop index if exists "device_certificate_issued_idx";`);
    this.addSql(`drop index if exists "device_certificate_expiry_idx";`);
  }
}
