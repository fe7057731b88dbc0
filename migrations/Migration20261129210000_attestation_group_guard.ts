import { Migration } from '@mikro-orm/migrations';

/**
 * `attestation_guard(ok, message)`: raises serialization_failure (40001) when `ok` is false. An
 * attestation group is written in one autocommit statement from rows read without locks; the
 * statement ends with this guard over what its claims and device updates matched, so a group that
 * something else changed in between rolls back whole (and is decided again under row locks) instead
 * of committing in part.
 */
export class Migration20261129210000_attestation_group_guard extends Migration {
  override up(): void {
    this.addSql(`
      create function "attestation_guard"(ok boolean, message text) returns boolean
      language plpgsql volatile as $$
      begin
        if not ok then
          raise exception using errcode = '40001', message = message;
        end if;
        return true;
      end $$;`);
  }

  override down(): void {
    this.addSql(`drop function if exists "attestation_guard"(boolean, text);`);
  }
}
