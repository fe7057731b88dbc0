import { Migration } from '@mikro-orm/migrations';

/** The statuses in which a case still counts as the one open case for its device and source. */
const DEDUPLICATED = `"status" in ('OPEN', 'INVESTIGATING', 'RESOLVED') and "source" <> 'MANUAL'`;

/**
 * The cases domain: assignee and closing time, linked devices, and an append-only timeline that
 * replaces the evidence array once kept in the case row. Existing cases keep their history: the
 * primary device becomes the first link, and the opening and each appended piece of evidence become
 * timeline entries. A partial unique index makes "one open case per device and source" a rule the
 * database enforces across instances.
 */
export class Migration20261129010000_cases extends Migration {
  override up(): void {
    this.addSql(`
      alter table "case_record"
        add column "assignee" varchar(200) null,
        add column "closed_at" timestamptz(3) null,
        add constraint "case_record_source_check" check ("source" in
          ('ATTESTATION_FAILURE', 'UNRESPONSIVE', 'ENROLLMENT_REJECTED', 'RISK_CRITICAL', 'MANUAL'));`);
    this.addSql(`
      create table "case_device" (
        "case_ref" uuid not null references "case_record" ("id") on delete cascade,
        "device_ref" uuid not null references "device" ("id") on delete cascade,
        "linked_at" timestamptz(3) not null,
        "linked_by" varchar(200) not null,
        primary key ("case_ref", "device_ref")
      );`);
    this.addSql(`create index "case_device_device_idx" on "case_device" ("device_ref", "case_ref");`);
    this.addSql(`
      create table "case_event" (
        "seq" bigserial primary key,
        "case_ref" uuid not null references "case_record" ("id") on delete cascade,
        "kind" varchar(24) not null check ("kind" in
          ('OPENED', 'NOTE', 'STATUS_CHANGED', 'EVIDENCE', 'ATTACHMENT', 'ASSIGNED', 'DEVICE_LINKED')),
        "actor" varchar(200) not null,
        "at" timestamptz(3) not null,
        "body" text null,
        "payload" jsonb not null default '{}'
      );`);
    this.addSql(`create index "case_event_case_idx" on "case_event" ("case_ref", "seq");`);
    this.addSql(`create index "case_record_list_idx" on "case_record" ("status", "number");`);
    this.addSql(`create index "case_record_assignee_idx" on "case_record" ("assignee", "number");`);

    this.addSql(`
      insert into "case_device" ("case_ref", "device_ref", "linked_at", "linked_by")
        select "id", "device_ref", "opened_at", 'system:migration' from "case_record"
        where "device_ref" is not null;`);
    this.addSql(`
      insert into "case_event" ("case_ref", "kind", "actor", "at", "body", "payload")
        select "id", 'OPENED', 'system:migration', "opened_at", "title",
               jsonb_build_object('source', "source", 'severity', "severity",
                                  'evidence', "evidence" - 'appended')
        from "case_record" order by "number";`);
    this.addSql(`
      insert into "case_event" ("case_ref", "kind", "actor", "at", "payload")
        select c."id", 'EVIDENCE', 'system:migration',
               coalesce((item ->> 'at')::timestamptz, c."updated_at"),
               jsonb_build_object('severity', c."severity", 'evidence', item - 'at')
        from "case_record" c
        cross join lateral jsonb_array_elements(
          case when jsonb_typeof(c."evidence" -> 'appended') = 'array' then c."evidence" -> 'appended'
               else '[]'::jsonb end) with ordinality as appended (item, position)
        order by c."number", appended.position;`);
    this.addSql(
      `update "case_record" set "evidence" = "evidence" - 'appended' where "evidence" ? 'appended';`,
    );
    // Cases closed before the column existed: their last change is the best record of the closing.
    this.addSql(`update "case_record" set "closed_at" = "updated_at" where "status" = 'CLOSED';`);
    // Cases opened by racing instances before this index existed: the oldest (the one that received
    // appended evidence) stays open, the others are closed as its duplicates, with the reason on their
    // timeline, so that the index can be built.
    this.addSql(`
      with ranked as (
        select "id", first_value("number") over w as "kept",
               row_number() over w as "rank"
        from "case_record" where ${DEDUPLICATED} and "device_ref" is not null
        window w as (partition by "device_ref", "source" order by "number")
      ), closed as (
        update "case_record" c set "status" = 'CLOSED', "closed_at" = now(), "updated_at" = now()
        from ranked r where r."id" = c."id" and r."rank" > 1
        returning c."id", r."kept"
      )
      insert into "case_event" ("case_ref", "kind", "actor", "at", "body", "payload")
        select "id", 'STATUS_CHANGED', 'system:migration', now(), 'duplicate of case ' || "kept",
               jsonb_build_object('to', 'CLOSED')
        from closed;`);
    this.addSql(
      `create unique index "case_record_one_open" on "case_record" ("device_ref", "source") where ${DEDUPLICATED};`,
    );
  }

  override down(): void {
    this.addSql(`drop index if exists "case_record_one_open";`);
    this.addSql(`drop index if exists "case_record_assignee_idx";`);
    this.addSql(`drop index if exists "case_record_list_idx";`);
    this.addSql(`drop table if exists "case_event";`);
    this.addSql(`drop table if exists "case_device";`);
    this.addSql(`
      alter table "case_record"
        drop constraint if exists "case_record_source_check",
        drop column "assignee",
        drop column "closed_at";`);
  }
}
