import { readFileSync } from 'node:fs';
import { GraphQLError, parse, print } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import bundledManifest from '../client/generated/persisted-documents.json' with { type: 'json' };

/**
 * Persisted operations: documents known in advance, addressed by their hash. Any client may send
 * `documentId` (or Apollo's `extensions.persistedQuery.sha256Hash`) instead of the text; in
 * persisted-only mode every other document is refused, so a stolen token can run only what the
 * dashboards and connectors were built with, never an arbitrary (expensive or probing) query.
 */
export interface AllowList {
  readonly only: boolean;
  /** Manifest id (`sha256:<hex>`) -> document text. */
  readonly byId: ReadonlyMap<string, string>;
  /** The documents' canonical prints, so the same operation sent as text is recognised too. */
  readonly canonical: ReadonlySet<string>;
}

/** The operation fields of a GraphQL-over-HTTP request or a graphql-ws `subscribe` payload. */
export interface OperationParams {
  query?: string | undefined;
  documentId?: unknown;
  extensions?: Record<string, unknown> | null | undefined;
}

/**
 * The allow-list: the manifest codegen writes for this repository's own operations
 * (src/client/generated/persisted-documents.json) unless `manifestPath` names another one with the
 * same shape (`{"sha256:<hex>": "<document>"}`).
 */
export function loadAllowList(options: { only: boolean; manifestPath: string | null }): AllowList {
  const manifest: unknown = options.manifestPath
    ? JSON.parse(readFileSync(options.manifestPath, 'utf8'))
    : bundledManifest;
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) {
    throw new Error('the persisted operations manifest must be a JSON object of id -> document');
  }
  const byId = new Map<string, string>();
  const canonical = new Set<string>();
  for (const [id, document] of Object.entries(manifest)) {
    if (typeof document !== 'string') throw new Error(`persisted operation ${id} is not a string`);
    byId.set(id, document);
    canonical.add(print(parse(document)));
  }
  return { only: options.only, byId, canonical };
}

/**
 * The document text to run for `params`: the persisted one when an id is given (unknown id: an
 * error), else the text sent, which persisted-only mode accepts only when it is on the list.
 */
export function operationText(list: AllowList, params: OperationParams): string | undefined {
  const id = requestedId(params);
  if (id !== undefined) {
    const text = list.byId.get(id) ?? list.byId.get(`sha256:${id}`);
    if (text === undefined) {
      throw new GraphQLError('Unknown persisted operation', {
        extensions: { code: 'PERSISTED_QUERY_NOT_FOUND', http: { status: 400 } },
      });
    }
    return text;
  }
  if (!list.only || (params.query !== undefined && list.canonical.has(canonicalPrint(params.query)))) {
    return params.query;
  }
  throw new GraphQLError(
    'Only persisted operations are accepted here: send a documentId from the allow-list',
    {
      extensions: { code: 'PERSISTED_QUERY_ONLY', http: { status: 400 } },
    },
  );
}

/** The HTTP side (GET, POST, SSE); graphql-ws calls operationText itself before parsing. */
export function persistedOperationsPlugin(list: AllowList): Plugin {
  return {
    onParams({ params, request, setParams }) {
      // GET carries the id as a query parameter (GraphQL over HTTP persisted documents).
      const documentId: unknown =
        (params as OperationParams).documentId ??
        (request.method === 'GET'
          ? (new URL(request.url).searchParams.get('documentId') ?? undefined)
          : undefined);
      const query = operationText(list, { ...params, documentId });
      if (query !== undefined && query !== params.query) setParams({ ...params, query });
    },
  };
}

function requestedId(params: OperationParams): string | undefined {
  if (typeof params.documentId === 'string') return params.documentId;
  const apollo = params.extensions?.persistedQuery as { sha256Hash?: unknown } | undefined;
  return typeof apollo?.sha256Hash === 'string' ? apollo.sha256Hash : undefined;
}

/** A text that does not parse is on no list; the refusal, not a syntax error, is the answer. */
function canonicalPrint(query: string): string {
  try {
    return print(parse(query));
  } catch {
    return '';
  }
}
