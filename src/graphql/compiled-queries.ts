import {
  OperationTypeNode,
  getOperationAST,
  getVariableValues,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { LRUCache } from 'lru-cache';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../observability/logger.js';
import type { GraphQLContext } from './context.js';

/** Source characters of the documents whose compiled code is kept: some 25 MB of code. */
const COMPILED_SOURCE_CHARACTERS = 256 * 1024;
/** What a document parsed without locations is counted as. */
const UNKNOWN_SOURCE_SIZE = 8 * 1024;

/**
 * Runs query operations as code compiled once per document and operation (graphql-jit) instead of
 * graphql-js' generic walk over the selection set. A fleet page resolves some 4,000 fields over
 * 1,100 objects, and the walk was the largest share of its CPU.
 *
 * - The cache is keyed by the parsed document (yoga reuses it for the same source text) and the
 *   operation name, so a document holding several operations runs the one asked for.
 * - Variables that do not coerce go to graphql-js, so such a request fails exactly as it would
 *   without compilation (a 400 with graphql-js' messages).
 * - A document is compiled when it runs the second time. Compiling costs 1-3 ms (about what a small
 *   query costs to run), so a stream of one-off documents is not made dearer by it.
 * - A document the compiler refuses runs on graphql-js; the refusal is logged once.
 * - The cache is bounded by the source size of the documents it holds (least recently used go
 *   first): compiled code is about a hundred times the source (65 KB for the 600-character fleet
 *   page), so a client sending many distinct large documents cannot grow it without bound.
 * - Mutations and subscriptions stay on graphql-js: mutations are few, and the shared subscription
 *   executions run their markers through graphql-js' `execute`.
 */
export function compiledQueriesPlugin(logger: Logger): Plugin<GraphQLContext> {
  /** Per document and operation name: its compiled code, the compiler's refusal, or `seen` once. */
  const compiled = new LRUCache<DocumentNode, Map<string, CompiledQuery | ExecutionResult | 'seen'>>({
    maxSize: COMPILED_SOURCE_CHARACTERS,
    sizeCalculation: (_operations, document) => document.loc?.source.body.length ?? UNKNOWN_SOURCE_SIZE,
  });

  function compiledFor(args: ExecutionArgs): CompiledQuery | undefined {
    let byOperation = compiled.get(args.document);
    if (!byOperation) {
      byOperation = new Map();
      compiled.set(args.document, byOperation);
    }
    const key = args.operationName ?? '';
    let entry = byOperation.get(key);
    if (!entry) {
      byOperation.set(key, 'seen');
      return undefined;
    }
    if (entry === 'seen') {
      entry = compileQuery(args.schema, args.document, args.operationName ?? undefined);
      if (!isCompiledQuery(entry)) {
        logger.warn({ errors: entry.errors, operationName: args.operationName }, 'query not compiled');
      }
      byOperation.set(key, entry);
    }
    return isCompiledQuery(entry) ? entry : undefined;
  }

  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const { document, operationName } = args as ExecutionArgs;
      const operation = getOperationAST(document, operationName);
      if (operation?.operation !== OperationTypeNode.QUERY) return;
      const query = compiledFor(args);
      if (!query) return;
      const graphqlJs = executeFn as (run: ExecutionArgs) => ReturnType<CompiledQuery['query']>;
      setExecuteFn((run: ExecutionArgs) => {
        const variables = getVariableValues(
          run.schema,
          operation.variableDefinitions ?? [],
          run.variableValues ?? {},
        );
        if (variables.errors) return graphqlJs(run);
        return query.query(run.rootValue, run.contextValue, run.variableValues);
      });
    },
  };
}
