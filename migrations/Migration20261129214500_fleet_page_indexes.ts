import { Migration } from '@mikro-orm/migrations';

/**
 * Indexes in the exact order the fleet pages read: risk score ascending with nulls first (scanned
 * backwards for the riskiest first), device id as the keyset's tie-break, over the devices a default
 * list shows (rejected ones are left out unless asked). With the site in front, a site's page reads
 * its 100 rows instead of sorting the whole site, and its totalCount is an index-only scan.
 * device_risk_score_idx broke ties on id, which no query orders by, so no page could use it.
 */
export class Migration20261129214500_fleet_page_indexes extends Migration {
  override up(): void {
    this.addSql(`drop index if exists "device_risk_score_idx";`);
    this.addSql(
      `create index "device_risk_order_idx" on "device" ("risk_score" nulls first, "device_id") where "enrollment_state" <> 'REJECTED';`,
    );
    this.addSql(
      `create index "device_site_risk_idx" on "device" ("site_id", "risk_score" nulls first, "device_id") where "enrollment_state" <> 'REJECTED';`,
    );
  }

  override down(): void {
    this.addSql(`drop index if exists "device_site_risk_idx";`);
    this.addSql(`drop index if exists "device_risk_order_idx";`);
    this.addSql(`create index "device_risk_score_idx" on "device" ("risk_score" desc, "id");`);
  }
}
