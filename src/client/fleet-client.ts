import { randomUUID } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult, type GraphQLFormattedError } from 'graphql';
import { CloseCode, createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface FleetClientOptions {
  /** The GraphQL endpoint, e.g. `http://127.0.0.1:8080/graphql`; subscriptions use the same path over ws(s). */
  url: string;
  /** An API token (`fpt_…`). */
  token: string;
  /** Times `query` and `mutate` resend a request that failed in transit; default 3. */
  retries?: number;
  /**
   * Called when the subscription socket is back after a drop (its subscriptions are resent by then).
   * Events published while it was down were not delivered: read on from the last cursor you hold.
   */
  onReconnect?: () => void;
}

/** The operation ran and answered with GraphQL errors (not the typed errors of a result union). */
export class FleetApiError extends Error {
  constructor(readonly errors: readonly GraphQLFormattedError[]) {
    super(errors.map((error) => error.message).join('; '));
    this.name = 'FleetApiError';
  }
}

type Variables<V> = V extends Record<string, never> ? [variables?: V] : [variables: V];

export interface FleetClient {
  query<R, V>(document: TypedDocumentNode<R, V>, ...variables: Variables<V>): Promise<R>;
  /**
   * Runs a mutation with an idempotency key (a new one per call unless given), so resending it after
   * a failure in transit cannot apply it twice: the server answers a resend with the first response.
   */
  mutate<R, V>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    options?: { idempotencyKey?: string },
  ): Promise<R>;
  /** Events as they come, over graphql-ws; survives reconnects (the subscription is resent). */
  subscribe<R, V>(document: TypedDocumentNode<R, V>, ...variables: Variables<V>): AsyncIterableIterator<R>;
  close(): Promise<void>;
}

/** Close codes after which reconnecting cannot help: the token is refused, or the client is at fault. */
const FINAL_CLOSE_CODES: readonly number[] = [
  CloseCode.Forbidden,
  CloseCode.Unauthorized,
  CloseCode.BadRequest,
];
const MAX_BACKOFF_MS = 10_000;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const backoff = (attempt: number) => Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);

/**
 * A typed client of the fleetproof GraphQL API for Node.js: documents generated from
 * src/client/operations (or your own, through the same codegen) fix the variables and result types.
 */
export function createFleetClient(options: FleetClientOptions): FleetClient {
  const retries = options.retries ?? 3;
  let socket: Client | undefined;
  const ws = () =>
    (socket ??= createClient({
      url: options.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${options.token}` },
      lazy: true,
      retryAttempts: Number.POSITIVE_INFINITY,
      retryWait: (attempt) => pause(backoff(attempt)),
      shouldRetry: (event) =>
        !(
          typeof event === 'object' &&
          event !== null &&
          FINAL_CLOSE_CODES.includes((event as { code?: number }).code ?? 0)
        ),
      on: {
        connected: (_socket, _payload, wasRetry) => {
          if (wasRetry) options.onReconnect?.();
        },
      },
    }));

  async function post<R>(body: Record<string, unknown>): Promise<R> {
    const text = JSON.stringify(body);
    for (let attempt = 0; ; attempt += 1) {
      let response: Response;
      try {
        response = await fetch(options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/graphql-response+json',
            authorization: `Bearer ${options.token}`,
          },
          body: text,
        });
      } catch (error) {
        // Lost in transit: the server may or may not have run it. Queries are safe to resend, and a
        // mutation carries its idempotency key, so resending cannot apply it twice.
        if (attempt >= retries) throw error;
        await pause(backoff(attempt));
        continue;
      }
      if (response.status >= 502 && response.status <= 504 && attempt < retries) {
        await pause(backoff(attempt));
        continue;
      }
      const result = (await response.json()) as FormattedExecutionResult<R>;
      if (result.errors?.length || !result.data) throw new FleetApiError(result.errors ?? []);
      return result.data;
    }
  }

  return {
    query: (document, ...[variables]) => post({ query: print(document), variables }),
    mutate: (document, variables, { idempotencyKey = randomUUID() } = {}) =>
      post({ query: print(document), variables, extensions: { idempotencyKey } }),
    subscribe<R, V>(document: TypedDocumentNode<R, V>, ...[variables]: Variables<V>) {
      const results = ws().iterate<R>({
        query: print(document),
        ...(variables ? { variables } : {}),
      });
      const events: AsyncIterableIterator<R> = {
        async next() {
          const next = await results.next();
          if (next.done) return { done: true, value: undefined };
          if (next.value.errors?.length || !next.value.data) throw new FleetApiError(next.value.errors ?? []);
          return { done: false, value: next.value.data };
        },
        async return() {
          await results.return?.();
          return { done: true, value: undefined };
        },
        [Symbol.asyncIterator]: () => events,
      };
      return events;
    },
    close: async () => {
      await socket?.dispose();
    },
  };
}
