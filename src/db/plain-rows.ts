import {
  ReferenceKind,
  type EntityClass,
  type EntityKey,
  type EntityMetadata,
  type EntityProperty,
} from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';

/**
 * Plain rows: reads that bypass the unit of work, for the read-only paths that serve many rows
 * (the GraphQL fleet page and its relations).
 *
 * `em.find` turns every row into a managed entity: an identity-map entry, a change-tracking
 * snapshot, property definitions per instance. For the 100 device rows of a fleet page that cost
 * 4.9 ms of CPU against 2.2 ms for the query builder's plain results and 1.2 ms for raw SQL, and
 * hydration and the garbage it leaves were some 60% of the page's CPU. Here the select list
 * (`alias."column" as "property", ...`) is built once per entity and alias from the ORM's metadata,
 * the SQL is sent as is, and the few columns whose driver value differs from the hydrated one are
 * converted the way the ORM converts them (timestamps come back from its connection as text; custom
 * types such as bigint go through the type's own conversion), so a row equals, property by property,
 * what `em.find` hydrates. test/integration/platform/plain-rows.test.ts holds each entity read this
 * way to that.
 *
 * The rule: a plain row is never flushed. It is in no identity map, so changing it changes nothing
 * and persisting it would insert a copy. Anything that changes a row reads it through the ORM, in the
 * transaction that writes it.
 */

type Convert = (value: unknown) => unknown;

interface RowShape {
  /** Properties whose driver value the ORM converts when it hydrates them. */
  conversions: ReadonlyArray<readonly [property: string, convert: Convert]>;
  /** Select lists by table alias. */
  selects: Map<string, string>;
}

const shapes = new WeakMap<EntityMetadata, RowShape>();

function shapeOf(em: EntityManager, entity: EntityClass<object>): { meta: EntityMetadata; shape: RowShape } {
  const meta = em.getMetadata(entity) as EntityMetadata;
  let shape = shapes.get(meta);
  if (!shape) {
    const platform = em.getPlatform();
    const conversions: Array<readonly [string, Convert]> = [];
    for (const prop of meta.props) {
      if (prop.kind !== ReferenceKind.SCALAR || prop.fieldNames.length !== 1 || prop.formula) {
        throw new Error(`plain rows read scalar columns only: ${meta.className}.${prop.name} is not one`);
      }
      const steps: Convert[] = [];
      if (prop.runtimeType === 'Date' && !platform.isNumericProperty(prop)) {
        steps.push((value) => (value instanceof Date ? value : platform.parseDate(value as string)));
      }
      const type = prop.customType;
      if (type) steps.push((value) => type.convertToJSValue(value, platform));
      if (steps.length > 0) {
        conversions.push([
          prop.name,
          steps.length === 1 ? steps[0]! : (value) => steps[1]!(steps[0]!(value)),
        ]);
      }
    }
    shape = { conversions, selects: new Map() };
    shapes.set(meta, shape);
  }
  return { meta, shape };
}

/**
 * `alias."column" as "property", ...` for every column of `entity`, for a statement read with
 * {@link plainRows}. Built once per entity and alias.
 */
export function selectList(em: EntityManager, entity: EntityClass<object>, alias: string): string {
  const { meta, shape } = shapeOf(em, entity);
  let select = shape.selects.get(alias);
  if (select === undefined) {
    const platform = em.getPlatform();
    select = meta.props
      .map((prop) => {
        const column = `${alias}.${platform.quoteIdentifier(prop.fieldNames[0]!)}`;
        const value = prop.customType?.convertToJSValueSQL?.(column, platform) ?? column;
        return `${value} as ${platform.quoteIdentifier(prop.name)}`;
      })
      .join(', ');
    shape.selects.set(alias, select);
  }
  return select;
}

/**
 * Runs `sql` (`?` placeholders, an array expands to a list) in the EntityManager's transaction, if
 * any, and returns its rows as plain objects equal to what `em.find(entity, ...)` hydrates. The
 * statement selects {@link selectList} of `entity`; further columns it selects are passed through.
 * Never flush what this returns (see the module comment).
 */
export async function plainRows<T extends object, Extra extends object = object>(
  em: EntityManager,
  entity: EntityClass<T>,
  sql: string,
  params: readonly unknown[] = [],
): Promise<Array<T & Extra>> {
  const { shape } = shapeOf(em, entity);
  const rows = await em.execute<Array<Record<string, unknown>>>(sql, [...params], 'all');
  const { conversions } = shape;
  for (const row of rows) {
    for (const [property, convert] of conversions) {
      const value = row[property];
      if (value !== null && value !== undefined) row[property] = convert(value);
    }
  }
  return rows as Array<T & Extra>;
}

/**
 * {@link plainRows} for a loader's batch of keys, given as the statement's first `?` (and `params`
 * after them); no statement at all for no keys.
 */
export function plainRowsByKeys<T extends object>(
  em: EntityManager,
  entity: EntityClass<T>,
  keys: readonly unknown[],
  sql: string,
  params: readonly unknown[] = [],
): Promise<T[]> {
  return keys.length === 0 ? Promise.resolve([]) : plainRows(em, entity, sql, [keys, ...params]);
}

/** The quoted column of `entity`'s `property` (`alias."column"`) and the property's metadata. */
export function columnOf<T extends object>(
  em: EntityManager,
  entity: EntityClass<T>,
  property: string,
  alias: string,
): { sql: string; prop: EntityProperty<T> } {
  const meta = em.getMetadata<T>(entity);
  const prop = (meta.properties as Partial<Record<string, EntityProperty<T>>>)[property];
  if (!prop) throw new Error(`${meta.className} has no property ${property}`);
  return { sql: `${alias}.${em.getPlatform().quoteIdentifier(prop.fieldNames[0]!)}`, prop };
}

/** The rows of `entity` whose `property` is one of `keys` (a loader's batch), as {@link plainRows}. */
export function plainRowsWhereIn<T extends object>(
  em: EntityManager,
  entity: EntityClass<T>,
  property: EntityKey<T>,
  keys: readonly unknown[],
): Promise<T[]> {
  const table = em.getPlatform().quoteIdentifier(em.getMetadata(entity).tableName);
  return plainRowsByKeys(
    em,
    entity,
    keys,
    `select ${selectList(em, entity, 't')} from ${table} t where ${columnOf(em, entity, property, 't').sql} in (?)`,
  );
}
