import { Migration } from '@mikro-orm/migrations';

/**
 * The audit chain's head in one row (last seq and its hash) and `audit_append`, which appends a
 * batch of events in one statement instead of a global advisory lock, a read of the last row and
 * an insert. The head's row lock serialises appenders (of every instance) until their commit.
 * Instances of the previous version must be stopped first: an event they append after this would
 * not move the head, and the next append would then fail on the duplicate seq (never fork).
 */
export class Migration20261129190000_audit_chain_head extends Migration {
  override up(): void {
    this.addSql(`
      create table "audit_chain_head" (
        "id" smallint primary key check ("id" = 1),
        "seq" bigint not null,
        "hash" varchar(64) not null
      );`);
    // The previous version's chain lock: no event of a still running writer slips in before the seed.
    this.addSql(`select pg_advisory_xact_lock(1718641013);`);
    this.addSql(`
      insert into "audit_chain_head" ("id", "seq", "hash")
      select 1, "seq", "hash" from "audit_event" order by "seq" desc limit 1;`);
    // Each event of p_events carries the canonical text around its chain values (audit-chain.ts):
    // its hash is SHA-256 of head || predecessor's hash || separator || seq || tail. No head row
    // is an empty chain (seq 0, GENESIS_HASH), as after a truncate.
    this.addSql(`
      create function "audit_append"(p_events jsonb, p_occurred_at timestamptz, p_separator text)
      returns table ("seq" bigint, "prev_hash" varchar(64), "hash" varchar(64))
      language plpgsql as $$
      declare
        v_seq bigint;
        v_hash varchar(64);
        v_event jsonb;
      begin
        insert into audit_chain_head (id, seq, hash) values (1, 0, repeat('0', 64))
          on conflict (id) do nothing;
        select h.seq, h.hash into v_seq, v_hash from audit_chain_head h where h.id = 1 for update;
        for v_event in select value from jsonb_array_elements(p_events) loop
          prev_hash := v_hash;
          v_seq := v_seq + 1;
          v_hash := encode(sha256(convert_to(
            (v_event ->> 'head') || prev_hash || p_separator || v_seq::text || (v_event ->> 'tail'),
            'UTF8')), 'hex');
          insert into audit_event (seq, occurred_at, actor, action, subject, details, prev_hash, hash)
            values (v_seq, p_occurred_at, v_event ->> 'actor', v_event ->> 'action',
                    v_event ->> 'subject', v_event -> 'details', prev_hash, v_hash);
          seq := v_seq;
          hash := v_hash;
          return next;
        end loop;
        update audit_chain_head h set seq = v_seq, hash = v_hash where h.id = 1;
      end $$;`);
  }

  override down(): void {
    this.addSql(`drop function if exists "audit_append"(jsonb, timestamptz, text);`);
    this.addSql(`drop table if exists "audit_chain_head";`);
  }
}
