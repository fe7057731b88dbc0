import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import { GraphQLError, type GraphQLFieldResolver } from 'graphql';
import { RateLimitedError } from '../shared/errors.js';
import type { GraphQLContext } from './context.js';

const pluginName = 'mutationGuard';

/**
 * Wraps every Mutation field, whoever declares it: a per-token rate limit before it runs (counted in
 * the database, so every instance shares it), and a note on the context when it fails, which the
 * idempotency plugin reads. Listed after the scope-auth and errors plugins so it runs inside them:
 * a caller without the scope never spends quota, and RATE_LIMITED comes back as the `RateLimited`
 * member of the field's result union.
 */
export class MutationGuardPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapResolve(
    resolver: GraphQLFieldResolver<unknown, Types['Context'], object>,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types['Context'], object> {
    if (fieldConfig.parentType !== 'Mutation') return resolver;
    // A field without typed errors cannot return the union member: give it a coded GraphQL error.
    const typed = Array.isArray(fieldConfig.extensions?.pothosErrors);
    return async (parent, args, rawContext, info) => {
      const context = rawContext as GraphQLContext;
      try {
        try {
          await context.services.rateLimiter.hit(
            context.em,
            `graphql-mutation:${context.viewer.tokenId}`,
            context.limits.mutationRateLimit,
          );
        } catch (error) {
          if (typed || !(error instanceof RateLimitedError)) throw error;
          throw new GraphQLError(error.message, {
            extensions: { code: error.code, retryAfterSeconds: error.retryAfterSeconds },
          });
        }
        return await resolver(parent, args, rawContext, info);
      } catch (error) {
        context.mutationFailed = true;
        throw error;
      }
    };
  }
}

SchemaBuilder.registerPlugin(pluginName, MutationGuardPlugin);

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- Pothos registers plugins in this global namespace
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      mutationGuard: MutationGuardPlugin<Types>;
    }
  }
}

export default pluginName;
