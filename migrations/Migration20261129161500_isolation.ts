import { Migration } from '@mikro-orm/migrations';

const KINDS = `'OPENED', 'NOTE', 'STATUS_CHANGED', 'EVIDENCE', 'ATTACHMENT', 'ASSIGNED', 'DEVICE_LINKED'`;

/**
 * Isolation: case timelines record a device's isolation and release, and the brokers' isolated-device
 * set is read through a partial index (a handful of rows in a fleet of any size).
 */
export class Migration20261129161500_isolation extends Migration {
  override up(): void {
    this.addSql(`
      alter table "case_event"
        drop constraint "case_event_kind_check",
        add constraint "case_event_kind_check"
          check ("kind" in (${KINDS}, 'DEVICE_ISOLATED', 'DEVICE_RELEASED'));`);
    this.addSql(`create index "device_isolated_idx" on "device" ("device_id") where "isolated";`);
  }

  override down(): void {
    this.addSql(`drop index if exists "device_isolated_idx";`);
    // The entries stay in their timelines, as evidence: the older schema has no kind of their own.
    this.addSql(`
      update "case_event" set "kind" = 'EVIDENCE' where "kind" in ('DEVICE_ISOLATED', 'DEVICE_RELEASED');`);
    this.addSql(`
      alter table "case_event"
        drop constraint "case_event_kind_check",
        add constraint "case_event_kind_check" check ("kind" in (${KINDS}));`);
  }
}
