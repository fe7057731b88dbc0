import SchemaBuilder from '@pothos/core';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import SimpleObjectsPlugin from '@pothos/plugin-simple-objects';
import { GraphQLError } from 'graphql';
import { roleHasScope, type Scope } from '../auth/roles.js';
import { RateLimitedError } from '../shared/errors.js';
import type { GraphQLContext } from './context.js';
import MutationGuardPlugin from './mutation-guard.js';
import { decodeGlobalIDOrNothing, resolveVisibleNodes } from './nodes.js';

export interface FleetSchemaTypes {
  Context: GraphQLContext;
  AuthScopes: Record<Scope, boolean>;
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
  /** Every connection counts its rows, lazily: the count runs only when a client selects it. */
  Connection: { totalCount: () => Promise<number> };
}

type FleetBuilder = PothosSchemaTypes.SchemaBuilder<PothosSchemaTypes.ExtendDefaultTypes<FleetSchemaTypes>>;

/** Setup only: each types/<feature>.ts owns its types and fields. */
// Annotated because node resolution below refers back to the builder.
export const builder: FleetBuilder = new SchemaBuilder<FleetSchemaTypes>({
  // Order matters: the mutation guard runs inside scope-auth and the errors plugin (see its comment).
  plugins: [
    ScopeAuthPlugin,
    ErrorsPlugin,
    RelayPlugin,
    DataloaderPlugin,
    SimpleObjectsPlugin,
    MutationGuardPlugin,
  ],
  scopeAuth: {
    authorizeOnSubscribe: true,
    authScopes: (context) => ({
      viewer: roleHasScope(context.viewer.role, 'viewer'),
      operator: roleHasScope(context.viewer.role, 'operator'),
      facilities: roleHasScope(context.viewer.role, 'facilities'),
      integration: roleHasScope(context.viewer.role, 'integration'),
      admin: roleHasScope(context.viewer.role, 'admin'),
    }),
    unauthorizedError: () =>
      new GraphQLError('Not authorized for this field', { extensions: { code: 'FORBIDDEN' } }),
  },
  // Every mutation can be rate limited, so every result union has the member.
  errors: { defaultTypes: [RateLimitedError] },
  relay: {
    clientMutationId: 'optional',
    cursorType: 'String',
    edgesFieldOptions: { nullable: false },
    nodeFieldOptions: { nullable: false },
    decodeGlobalID: decodeGlobalIDOrNothing,
    nodeQueryOptions: {
      description: 'Any object by its global id; null when it does not exist or the caller may not read it',
      resolve: async (_root, { id }, context, info) =>
        (await resolveVisibleNodes(builder, [id], context, info))[0],
    },
    nodesQueryOptions: {
      description: 'Objects by global id, in order; null for each that does not exist or may not be read',
      resolve: (_root, { ids }, context, info) => resolveVisibleNodes(builder, ids, context, info),
    },
  },
  defaultFieldNullability: false,
});

builder.globalConnectionField('totalCount', (t) =>
  t.int({
    description: 'Rows matching the arguments across all pages (counted only when selected)',
    resolve: (connection) => connection.totalCount(),
  }),
);

builder.queryType({ authScopes: { viewer: true } });
builder.mutationType({ authScopes: { viewer: true } });
builder.subscriptionType({ authScopes: { viewer: true } });
