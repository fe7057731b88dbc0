import { Migration } from '@mikro-orm/migrations';

/**
 * Sites with their controller's heartbeat, site-scoped API tokens, and the indexes behind the
 * online filter and the per-site listings. Devices keep their plain `site_id` (no foreign key): a
 * device may name a site before facilities define it, and it links up when they do.
 */
export class Migration20261129170000_sites extends Migration {
  override up(): void {
    this.addSql(`
      create table "site" (
        "id" varchar(64) not null primary key,
        "name" varchar(200) not null,
        "controller_id" varchar(64) null,
        "last_heartbeat_at" timestamptz(3) null,
        "last_heartbeat_channel" varchar(8) null check ("last_heartbeat_channel" in ('mqtt', 'rest')),
        "created_at" timestamptz(3) not null,
        "updated_at" timestamptz(3) not null
      );`);
    // The broker asks "is this device the controller of that site?" on every MQTT heartbeat.
    this.addSql(
      `create index "site_controller_idx" on "site" ("controller_id") where "controller_id" is not null;`,
    );
    this.addSql(`alter table "api_token" add column "site_id" varchar(64) null;`);
    this.addSql(`
      alter table "api_token" drop constraint "api_token_role_check",
        add constraint "api_token_role_check"
          check ("role" in ('viewer', 'operator', 'facilities', 'integration', 'admin', 'site'));`);
    this.addSql(`
      alter table "api_token" add constraint "api_token_site_role_check"
        check (("role" = 'site') = ("site_id" is not null));`);
    // Online/offline filters and the LAST_SEEN order; Site.devices pages by (site_id, device_id), which
    // also serves every lookup the plain site_id index did.
    this.addSql(`create index "device_last_seen_idx" on "device" ("last_seen_at", "device_id");`);
    this.addSql(`create index "device_site_device_idx" on "device" ("site_id", "device_id");`);
    this.addSql(`drop index if exists "device_site_idx";`);
  }

  override down(): void {
    this.addSql(`create index "device_site_idx" on "device" ("site_id");`);
    this.addSql(`drop index if exists "device_site_device_idx";`);
    this.addSql(`drop index if exists "device_last_seen_idx";`);
    this.addSql(`alter table "api_token" drop constraint if exists "api_token_site_role_check";`);
    this.addSql(`delete from "api_token" where "role" = 'site';`);
    this.addSql(`alter table "api_token" drop column if exists "site_id";`);
    this.addSql(`
      alter table "api_token" drop constraint "api_token_role_check",
        add constraint "api_token_role_check"
          check ("role" in ('viewer', 'operator', 'facilities', 'integration', 'admin'));`);
    this.addSql(`drop table if exists "site";`);
  }
}
