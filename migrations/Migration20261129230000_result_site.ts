import { Migration } from '@mikro-orm/migrations';

/**
 * Each result records the site its device was at when it was decided, as its bus event always has.
 * The SIEM pull `attestationResults(filter: {site})` then reads one index range instead of first
 * listing the site's devices (thousands of ids in an IN list), and it means what the live
 * `attestationEvents(filter: {site})` means, so a connector that subscribes, then backfills with the
 * same filter gets the same results even for a device that has since moved. Existing results take
 * their device's current site: the best record of where it was.
 */
export class Migration20261129230000_result_site extends Migration {
  override up(): void {
    this.addSql(`alter table "attestation_result" add column "site_id" varchar(64) null;`);
    this.addSql(
      `update "attestation_result" r set "site_id" = d."site_id" from "device" d where d."id" = r."device_ref" and d."site_id" is not null;`,
    );
    this.addSql(
      `create index "attestation_result_site_idx" on "attestation_result" ("site_id", "seq") where "site_id" is not null;`,
    );
  }

  override down(): void {
    this.addSql(`drop index if exists "attestation_result_site_idx";`);
    this.addSql(`alter table "attestation_result" drop column if exists "site_id";`);
  }
}
