import { Migration } from '@mikro-orm/migrations';

/**
 * The device columns the operations layer (risk, sites, isolation) reads on every fleet page, created up
 * front so that the risk, sites and API work can land independently on one shape.
 */
export class Migration20261129000000_device_operations extends Migration {
  override up(): void {
    this.addSql(`
      alter table "device"
        add column "risk_score" smallint not null default 0 check ("risk_score" between 0 and 100),
        add column "risk_band" varchar(16) not null default 'NORMAL'
          check ("risk_band" in ('NORMAL', 'ELEVATED', 'CRITICAL')),
        add column "risk_scored_at" timestamptz(3) null,
        add column "policy_bundle_version" integer null,
        add column "isolated" boolean not null default false,
        add column "last_seen_at" timestamptz(3) null;`);
  }

  override down(): void {
    this.addSql(`
      alter table "device"
        drop column "risk_score",
        drop column "risk_band",
        drop column "risk_scored_at",
        drop column "policy_bundle_version",
        drop column "isolated",
        drop column "last_seen_at";`);
  }
}
