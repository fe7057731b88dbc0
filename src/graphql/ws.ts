import type { Server } from 'node:http';
import { GraphQLError } from 'graphql';
import type { ExecutionArgs, GraphQLSchema, execute, parse, subscribe, validate } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Viewer } from '../auth/token.service.js';
import type { Services } from '../services.js';
import { operationText, type AllowList } from './persisted-operations.js';
import type { FleetYoga } from './yoga.js';

/** How often an open socket re-checks that its token is still valid (revocation, expiry). */
const TOKEN_RECHECK_MS = 2_000;
/** RFC: graphql-ws closes with 4408 when connection_init does not arrive in time. */
const CONNECTION_INIT_TIMEOUT_MS = 5_000;

interface ConnectionExtra extends Record<PropertyKey, unknown> {
  viewer?: Viewer;
  credential?: string;
}

/**
 * GraphQL over WebSocket (graphql-transport-ws) on `/graphql`, sharing yoga's schema, plugins and
 * context factory. Authentication happens once, in connection_init (`authorization` in the payload);
 * a missing or bad token closes the socket with 4403 before any operation runs.
 */
export function attachGraphQLWebSocket(
  servers: Server[],
  yoga: FleetYoga,
  services: Services,
  allowList: AllowList,
): () => Promise<void> {
  const logger = services.logger.child({ component: 'graphql-ws' });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 });
  // A revoked or expired token must not keep a live feed: every open socket's token is re-checked
  // and the socket closed with 4403. One pass for all of them: one statement, not one per socket.
  const authenticated = new Map<WebSocket, Viewer>();
  let rechecking = false;
  const recheck = setInterval(() => {
    if (rechecking || authenticated.size === 0) return;
    rechecking = true;
    const tokenIds = [...new Set([...authenticated.values()].map((viewer) => viewer.tokenId))];
    services.tokens
      .usableTokenIds(services.database.orm.em.fork(), tokenIds)
      .then((usable) => {
        for (const [socket, viewer] of authenticated) {
          if (!usable.has(viewer.tokenId)) socket.close(CloseCode.Forbidden, 'Forbidden');
        }
      })
      .catch((error: unknown) => logger.warn({ err: error }, 'token re-check failed'))
      .finally(() => (rechecking = false));
  }, TOKEN_RECHECK_MS);
  recheck.unref();
  for (const server of servers) {
    server.on('upgrade', (request, socket, head) => {
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      if (path !== yoga.graphqlEndpoint) {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
    });
  }

  const disposable = useServer<Record<string, unknown>, ConnectionExtra>(
    {
      connectionInitWaitTimeout: CONNECTION_INIT_TIMEOUT_MS,
      // onSubscribe below puts yoga's enveloped execute/subscribe in rootValue.
      execute: (args: ExecutionArgs) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args: ExecutionArgs) => (args.rootValue as EnvelopedRoot).subscribe(args),
      onConnect: async (ctx) => {
        const raw = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const token = typeof raw === 'string' ? raw.replace(/^Bearer\s+/i, '').trim() : '';
        const em = services.database.orm.em.fork();
        const viewer = token ? await services.tokens.authenticate(em, token) : null;
        if (!viewer) {
          logger.info({ reason: token ? 'invalid token' : 'no token' }, 'graphql-ws connection refused');
          return false; // graphql-ws closes with 4403 Forbidden
        }
        ctx.extra.viewer = viewer;
        ctx.extra.credential = token;
        authenticated.set(ctx.extra.socket, viewer);
        return true;
      },
      onClose: (ctx) => {
        authenticated.delete(ctx.extra.socket);
      },
      onSubscribe: async (ctx, _id, payload) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          req: ctx.extra.request,
          viewer: ctx.extra.viewer,
          credential: ctx.extra.credential,
          params: payload,
          request: new Request('http://localhost/graphql', { method: 'POST' }),
        }) as Enveloped;
        let query: string | undefined;
        try {
          // The same allow-list as HTTP: a socket is no way around persisted-only mode.
          query = operationText(allowList, payload);
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        if (query === undefined) return [new GraphQLError('Must provide query string.')];
        const document = parse(query);
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const args: ExecutionArgs = {
          schema,
          operationName: payload.operationName ?? null,
          document,
          variableValues: payload.variables ?? null,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
        return args;
      },
    },
    wss,
  );

  return async () => {
    clearInterval(recheck);
    for (const client of wss.clients) client.close(1001, 'Server shutting down');
    await disposable.dispose();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  };
}

interface EnvelopedRoot {
  execute: typeof execute;
  subscribe: typeof subscribe;
}

/** What yoga's getEnveloped hands back (its own typing is loose). */
interface Enveloped extends EnvelopedRoot {
  schema: GraphQLSchema;
  parse: typeof parse;
  validate: typeof validate;
  contextFactory: () => Promise<unknown>;
}
