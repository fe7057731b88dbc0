import type { SchemaTypes } from '@pothos/core';
import { decodeGlobalID, resolveNodes } from '@pothos/plugin-relay';
import { GraphQLObjectType, type GraphQLResolveInfo } from 'graphql';
import { roleHasScope, SCOPES, type Scope } from '../auth/roles.js';
import type { GraphQLContext } from './context.js';

/**
 * Global object identification (`node`, `nodes`) without an existence oracle: an id that is
 * malformed, names no node type, names an object that does not exist, or names one the caller may
 * not read all come back as the same null. Readability is the type's own `authScopes` (the ones
 * Pothos' scope-auth enforces on every other path to that type), so the rule is declared once.
 */

interface GlobalID {
  typename: string;
  id: string;
}

/** A malformed id decodes to a type no schema has, so it reads as "not found" like any other miss. */
export function decodeGlobalIDOrNothing(globalID: string): GlobalID {
  try {
    return decodeGlobalID(globalID);
  } catch {
    return { typename: '', id: '' };
  }
}

type DeclaredScopes =
  Partial<Record<string, boolean>> | ((parent: unknown, context: GraphQLContext) => unknown) | undefined;

function isScope(name: string): name is Scope {
  return (SCOPES as readonly string[]).includes(name);
}

/** The map form as scope-auth reads it: any one scope the caller holds grants. */
function grants(scopes: unknown, context: GraphQLContext): boolean {
  if (scopes === undefined || scopes === true) return true;
  if (typeof scopes !== 'object' || scopes === null) return false;
  // Anything but plain scope names ($all, $granted, ...) is refused rather than half-understood.
  return Object.entries(scopes).some(
    ([scope, wanted]) => wanted === true && isScope(scope) && roleHasScope(context.viewer.role, scope),
  );
}

function declaredScopes(type: GraphQLObjectType): DeclaredScopes {
  return (type.extensions as { pothosOptions?: { authScopes?: DeclaredScopes } }).pothosOptions?.authScopes;
}

/** A node type the caller may read at all; per-object scopes (the function form) are checked on load. */
function readableNodeType(
  info: GraphQLResolveInfo,
  typename: string,
  context: GraphQLContext,
): GraphQLObjectType | undefined {
  const type = typename ? info.schema.getType(typename) : undefined;
  if (!(type instanceof GraphQLObjectType) || !type.getInterfaces().some((iface) => iface.name === 'Node')) {
    return undefined;
  }
  const declared = declaredScopes(type);
  return typeof declared === 'function' || grants(declared, context) ? type : undefined;
}

/**
 * `node` and `nodes`: ids of types the caller may not read are never loaded (so timing tells
 * nothing either); the rest go through the types' own batched loaders.
 */
export async function resolveVisibleNodes<Types extends SchemaTypes>(
  builder: PothosSchemaTypes.SchemaBuilder<Types>,
  ids: readonly GlobalID[],
  context: GraphQLContext,
  info: GraphQLResolveInfo,
): Promise<unknown[]> {
  const readable = ids.map((id) => readableNodeType(info, id.typename, context));
  const wanted = ids.filter((_id, index) => readable[index]);
  const loaded = wanted.length > 0 ? await resolveNodes(builder, context, info, wanted) : [];
  let next = 0;
  return Promise.all(
    ids.map(async (_id, index) => {
      const type = readable[index];
      if (!type) return null;
      const value = loaded[next++] ?? null;
      const declared = declaredScopes(type);
      if (value === null || typeof declared !== 'function') return value;
      return grants(await declared(value, context), context) ? value : null;
    }),
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SEQUENCE = /^[1-9]\d{0,17}$/;

/** Keys a node loader may pass to the database; others cannot name a row and load as null. */
export const validKey = {
  uuid: (key: string) => UUID.test(key),
  sequence: (key: string) => SEQUENCE.test(key),
};
