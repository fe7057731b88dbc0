import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { GraphQLError } from 'graphql';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import { bearerFrom, type Viewer } from '../auth/token.service.js';
import type { Services } from '../services.js';
import { compiledQueriesPlugin } from './compiled-queries.js';
import type { GraphQLContext, GraphQLLimits } from './context.js';
import { idempotencyPlugin } from './idempotency.js';
import { operationLimitPlugins } from './limits.js';
import { persistedOperationsPlugin, type AllowList } from './persisted-operations.js';
import { schema } from './schema.js';
import { sharedSubscriptionsPlugin } from './shared-subscriptions.js';

export interface ServerContext {
  req?: IncomingMessage;
  res?: ServerResponse;
  /** Set by the WebSocket transport, which authenticates once at connection_init. */
  viewer?: Viewer;
  credential?: string;
}

export type FleetYoga = YogaServerInstance<ServerContext, GraphQLContext>;

export function unauthenticated(): GraphQLError {
  return new GraphQLError('Authentication required: send Authorization: Bearer <token>', {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } } },
  });
}

export function createGraphQLServer(
  services: Services,
  options: { graphiql: boolean; production: boolean; graphql: GraphQLLimits; allowList: AllowList },
): FleetYoga {
  const logger = services.logger.child({ component: 'graphql' });
  return createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    graphiql: options.graphiql ? { subscriptionsProtocol: 'WS', title: 'fleetproof' } : false,
    landingPage: false,
    extraParamNames: ['documentId'],
    plugins: [
      persistedOperationsPlugin(options.allowList),
      // A browser sends a "simple" request (GET, or a form-like POST) cross-site without a CORS
      // preflight. Bearer tokens are not ambient today, but a proxy that adds credentials or a
      // future cookie session would turn such a request into a forged operation: refuse them unless
      // they carry a header only a script that passed the preflight can set. graphql-ws needs no
      // such check: its credential travels in connection_init, never with the upgrade.
      useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'apollo-require-preflight'] }),
      ...operationLimitPlugins({ production: options.production, introspection: options.graphiql }),
      idempotencyPlugin(),
      compiledQueriesPlugin(logger),
      // Last, so the subscribe it shares is the one every other plugin has already prepared.
      sharedSubscriptionsPlugin(services.metrics),
    ],
    logging: logger,
    maskedErrors: {
      // Unexpected errors reach the client as a correlation id that finds the full error in the logs.
      maskError: (error, message) => {
        const original = error instanceof GraphQLError ? error.originalError : error;
        if (error instanceof GraphQLError && !original) return error;
        if (error instanceof GraphQLError && original instanceof GraphQLError) return original;
        const correlationId = randomUUID();
        logger.error({ err: original ?? error, correlationId }, 'unexpected error in GraphQL operation');
        return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR', correlationId } });
      },
    },
    context: async ({ request, viewer: wsViewer, credential: wsCredential }) => {
      const em = services.database.orm.em.fork();
      const credential = wsCredential ?? bearerFrom(request.headers.get('authorization'));
      const viewer = wsViewer ?? (credential ? await services.tokens.authenticate(em, credential) : null);
      // Nothing but this error for an unauthenticated caller: not even the schema's shape.
      if (!viewer || !credential) throw unauthenticated();
      return {
        em,
        viewer,
        credential,
        services,
        requestId: request.headers.get('x-request-id') ?? randomUUID(),
        limits: options.graphql,
        mutationFailed: false,
      };
    },
  });
}
