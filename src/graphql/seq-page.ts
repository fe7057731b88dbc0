import type { EntityClass } from '@mikro-orm/core';
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import { columnOf, plainRows, selectList } from '../db/plain-rows.js';
import type { GraphQLContext } from './context.js';
import { decodeSequenceCursor, encodeCursor, keysetConnection } from './cursor.js';

/**
 * The filter of a seq page: per property, equal to a value or (a list) one of its values; an empty
 * list matches nothing. Nothing else, so the statement is always a keyset scan the indexes serve.
 */
export type SeqWhere<T> = Partial<Record<keyof T & string, string | readonly string[]>>;

/**
 * A Relay page over rows keyed on `seq`, which only grows: a cursor stays valid forever, so a reader
 * can resume exactly where it stopped, in either direction. `totalCount` is counted only when selected.
 * The rows are plain rows (src/db/plain-rows.ts): read-only, never flushed; a 500-row SIEM page hydrated
 * as managed entities spent most of its CPU on the identity map and change-tracking snapshots.
 */
export async function seqPage<T extends { seq: string }>(
  context: GraphQLContext,
  args: DefaultConnectionArguments,
  entity: EntityClass<T>,
  cursorKind: string,
  where: SeqWhere<T>,
  order: 'oldest-first' | 'newest-first',
) {
  const { em } = context;
  const platform = em.getPlatform();
  const column = (property: string) => columnOf(em, entity, property, 't');
  const from = `from ${platform.quoteIdentifier(em.getMetadata(entity).tableName)} t`;
  const conditions: string[] = [];
  const params: unknown[] = [];
  for (const [property, value] of Object.entries(where) as Array<
    [string, string | readonly string[] | undefined]
  >) {
    if (value === undefined) continue;
    const { prop, sql } = column(property);
    const toDatabase = (one: string): unknown =>
      prop.customType?.convertToDatabaseValue(one, platform) ?? one;
    if (typeof value === 'string') {
      conditions.push(`${sql} = ?`);
      params.push(toDatabase(value));
    } else if (value.length === 0) {
      conditions.push('false');
    } else {
      conditions.push(`${sql} in (?)`);
      params.push(value.map(toDatabase));
    }
  }
  const seq = column('seq').sql;
  const ascending = order === 'oldest-first';
  const connection = await keysetConnection(
    args,
    (row: T) => encodeCursor(cursorKind, row.seq),
    ({ before, after, limit, inverted }) => {
      const page = [...conditions];
      const pageParams = [...params];
      if (after) {
        page.push(`${seq} ${ascending ? '>' : '<'} ?`);
        pageParams.push(decodeSequenceCursor(cursorKind, after));
      }
      if (before) {
        page.push(`${seq} ${ascending ? '<' : '>'} ?`);
        pageParams.push(decodeSequenceCursor(cursorKind, before));
      }
      const filter = page.length > 0 ? ` where ${page.join(' and ')}` : '';
      return plainRows(
        em,
        entity,
        `select ${selectList(em, entity, 't')} ${from}${filter} order by ${seq} ${ascending !== inverted ? 'asc' : 'desc'} limit ?`,
        [...pageParams, limit],
      );
    },
  );
  const totalCount = async () => {
    const filter = conditions.length > 0 ? ` where ${conditions.join(' and ')}` : '';
    const [row] = await em.execute<Array<{ count: string | number | bigint }>>(
      `select count(*) as "count" ${from}${filter}`,
      params,
      'all',
    );
    return Number(row?.count ?? 0);
  };
  return { ...connection, totalCount };
}
