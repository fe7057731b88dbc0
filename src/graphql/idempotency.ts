import { createHash } from 'node:crypto';
import {
  GraphQLError,
  OperationTypeNode,
  getOperationAST,
  print,
  type ExecutionArgs,
  type ExecutionResult,
} from 'graphql';
import type { Plugin, YogaInitialContext } from 'graphql-yoga';
import type { IdempotentRequest, StoredRequest } from '../idempotency/idempotency.store.js';
import { canonicalJson } from '../shared/jcs.js';
import type { GraphQLContext } from './context.js';

/** How long a retry waits for the first request with its key to finish before giving up. */
const WAIT_FOR_FIRST_MS = 10_000;
const POLL_MS = 100;
const KEY_SHAPE = /^[\w.:-]{1,200}$/;

class KeyTakenError extends GraphQLError {
  constructor() {
    super('Another request holds this idempotency key', {
      extensions: { code: 'IDEMPOTENCY_KEY_IN_PROGRESS' },
    });
  }
}

const REFUSALS = {
  IDEMPOTENCY_KEY_REUSED:
    'This idempotency key was used for a different request; use a new key for a new request',
  IDEMPOTENCY_KEY_IN_PROGRESS:
    'The request with this idempotency key is still running, or its outcome was lost: check the state before retrying with a new key',
  IDEMPOTENCY_RESPONSE_NOT_KEPT:
    'The request with this idempotency key was applied but ended with errors, so its response was not kept: check the state',
} as const;

function refusal(code: keyof typeof REFUSALS): ExecutionResult {
  return { errors: [new GraphQLError(REFUSALS[code], { extensions: { code } })] };
}

/**
 * Idempotent mutations, one mechanism for all of them and both transports: a mutation request may
 * carry `extensions.idempotencyKey`. The first request with a key runs; the key is claimed inside
 * the transaction of the change it makes (TransactionRunner.enlist), so the change and the key
 * commit together or not at all. A retry with the same key by the same token gets the first
 * response back without running anything; the same key with a different request (document,
 * operation name or variables) is refused with IDEMPOTENCY_KEY_REUSED.
 *
 * What is guaranteed: at most one execution's change commits per token and key while the key lives
 * (FLEETPROOF_IDEMPOTENCY_KEY_TTL_S). A mutation that commits nothing on the request's
 * EntityManager (one that fails with a typed error) keeps no key, so a retry runs again; one that
 * commits through its own forks (the inventory import commits in batches) has its key recorded
 * right after it returns, so two copies racing there can both run. If the process dies between the
 * commit and storing the response, retries get IDEMPOTENCY_KEY_IN_PROGRESS instead of running again.
 */
export function idempotencyPlugin(): Plugin<GraphQLContext & YogaInitialContext> {
  return {
    async onExecute({ args, setResultAndStopExecution }) {
      const { document, operationName, variableValues } = args as ExecutionArgs;
      const context = args.contextValue as GraphQLContext & Partial<YogaInitialContext>;
      const key: unknown = context.params?.extensions?.idempotencyKey;
      if (
        key === undefined ||
        getOperationAST(document, operationName)?.operation !== OperationTypeNode.MUTATION
      ) {
        return;
      }
      if (typeof key !== 'string' || !KEY_SHAPE.test(key)) {
        setResultAndStopExecution({
          errors: [
            new GraphQLError('idempotencyKey must be 1-200 characters of letters, digits, _ . : -', {
              extensions: { code: 'BAD_USER_INPUT' },
            }),
          ],
        });
        return;
      }
      const { services, em, viewer, credential } = context;
      const store = services.idempotency;
      const request: IdempotentRequest = {
        tokenId: viewer.tokenId,
        key,
        fingerprint: createHash('sha256')
          .update(
            canonicalJson({
              document: print(document),
              operationName: operationName ?? null,
              variables: variableValues ?? {},
            }),
          )
          .digest('hex'),
      };
      const replay = async (): Promise<ExecutionResult> => {
        let stored = await store.find(em, request.tokenId, key, credential);
        const deadline = Date.now() + WAIT_FOR_FIRST_MS;
        while (
          stored?.state === 'running' &&
          stored.fingerprint === request.fingerprint &&
          Date.now() < deadline
        ) {
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          stored = await store.find(em, request.tokenId, key, credential);
        }
        return replayOf(stored, request);
      };

      const earlier = await store.find(em, request.tokenId, key, credential);
      if (earlier) {
        setResultAndStopExecution(await replay());
        return;
      }
      let lostRace = false;
      const withdraw = services.transactions.enlist(em, async (tx) => {
        if (await store.claim(tx, request)) return;
        lostRace = true;
        throw new KeyTakenError(); // rolls this request's change back: the other one owns the key
      });
      return {
        async onExecuteDone({ result, setResult }) {
          if (!isResult(result)) return;
          let claimed = withdraw();
          if (!claimed && !lostRace && !context.mutationFailed && !result.errors) {
            // Committed through forks of its own, or changed nothing: record the key now.
            services.transactions.enlist(em, async (tx) => {
              if (!(await store.claim(tx, request))) lostRace = true;
            });
            await services.transactions.run(em, () => Promise.resolve());
            claimed = !lostRace;
          }
          if (lostRace) {
            setResult(await replay());
            return;
          }
          if (claimed) {
            // A response with errors is not replayed: the change happened, its answer is not kept.
            await store.finish(em, request, result.errors ? null : { data: result.data ?? null }, credential);
          }
        },
      };
    },
  };
}

function isResult(result: unknown): result is ExecutionResult {
  return typeof result === 'object' && result !== null && !(Symbol.asyncIterator in result);
}

function replayOf(stored: StoredRequest | null, request: IdempotentRequest): ExecutionResult {
  if (!stored || stored.state === 'running') return refusal('IDEMPOTENCY_KEY_IN_PROGRESS');
  if (stored.fingerprint !== request.fingerprint) return refusal('IDEMPOTENCY_KEY_REUSED');
  if (stored.response === null) return refusal('IDEMPOTENCY_RESPONSE_NOT_KEPT');
  return { ...(stored.response as ExecutionResult), extensions: { idempotentReplay: true } };
}
