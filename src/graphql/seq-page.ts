import type { EntityName, FilterQuery } from '@mikro-orm/core';
import type { DefaultConnectionArguments } from '@pothos/plugin-relay';
import type { GraphQLContext } from './context.js';
import { decodeCursor, encodeCursor, keysetConnection } from './cursor.js';

/**
 * A Relay page over rows keyed on `seq`, which only grows: a cursor stays valid forever, so a reader
 * can resume exactly where it stopped, in either direction. `totalCount` is counted only when selected.
 */
export async function seqPage<T extends { seq: string }>(
  context: GraphQLContext,
  args: DefaultConnectionArguments,
  entity: EntityName<T>,
  cursorKind: string,
  where: Record<string, unknown>,
  order: 'oldest-first' | 'newest-first',
) {
  const ascending = order === 'oldest-first';
  const connection = await keysetConnection(
    args,
    (row: T) => encodeCursor(cursorKind, row.seq),
    ({ before, after, limit, inverted }) => {
      const seq: Record<string, string> = {};
      if (after) seq[ascending ? '$gt' : '$lt'] = decodeCursor(cursorKind, after);
      if (before) seq[ascending ? '$lt' : '$gt'] = decodeCursor(cursorKind, before);
      const filter = { ...where, ...(Object.keys(seq).length ? { seq } : {}) } as FilterQuery<T>;
      const rows: Promise<T[]> = context.em.find(entity, filter, {
        orderBy: { seq: ascending !== inverted ? 'asc' : 'desc' } as never,
        limit,
      });
      return rows;
    },
  );
  return { ...connection, totalCount: () => context.em.count(entity, where as FilterQuery<T>) };
}
