import type { EntityClass, FilterQuery } from '@mikro-orm/core';
import type { ObjectRef } from '@pothos/core';
import { builder } from './builder.js';

/**
 * Makes `ref` a Node whose global id wraps the row's `key` column. A page of ids loads in one query,
 * in the order asked, null where no row matched; `valid` keeps keys that cannot name a row (so
 * cannot exist) away from the database.
 */
export function rowNode<K extends string, Shape extends Record<K, string>, Row extends Shape>(
  ref: ObjectRef<typeof builder.$inferSchemaTypes, Shape>,
  entity: EntityClass<Row>,
  key: K,
  valid: (key: string) => boolean,
): void {
  builder.nodeRef<Shape, string, typeof ref>(ref, {
    id: { resolve: (parent) => parent[key] },
    loadMany: async (keys, context) => {
      const where = { [key]: { $in: keys.filter(valid) } } as FilterQuery<Row>;
      const rows = await context.em.find(entity, where);
      const byKey = new Map(rows.map((row): [string, Shape] => [row[key], row]));
      return keys.map((wanted) => byKey.get(wanted) ?? null);
    },
  });
}
