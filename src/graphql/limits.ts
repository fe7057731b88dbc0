import type { Plugin } from 'graphql-yoga';
import { blockFieldSuggestionsPlugin } from '@escape.tech/graphql-armor-block-field-suggestions';
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { NoSchemaIntrospectionCustomRule } from 'graphql';

/**
 * Limits every operation must pass before it executes, sized for the largest legitimate requests:
 * the SOC dashboard's deepest query (a device page with certificates, cases and attestations is
 * depth 6) and a SIEM pull of a full 500-row page (cost about 12,000: the cost counts `first`, so
 * nested pages multiply and are what the limit stops). `exposeLimits` is off so a
 * refusal does not teach an attacker the threshold; field suggestions are hidden in production so
 * error messages do not leak the schema when introspection is off.
 */
export const OPERATION_LIMITS = {
  depth: 10,
  aliases: 15,
  directives: 10,
  tokens: 2_000,
  cost: 50_000,
} as const;

/** Introspection is how a stranger maps the API: off wherever GraphiQL is off (production default). */
const noIntrospection: Plugin = {
  onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule),
};

/** The largest GraphQL request body read; larger ones are refused with 413 before parsing. */
export const MAX_GRAPHQL_BODY_BYTES = 1024 * 1024;

export function operationLimitPlugins(options: { production: boolean; introspection: boolean }): Plugin[] {
  return [
    ...(options.introspection ? [] : [noIntrospection]),
    maxTokensPlugin({ n: OPERATION_LIMITS.tokens, exposeLimits: false }),
    maxDepthPlugin({ n: OPERATION_LIMITS.depth, exposeLimits: false, flattenFragments: true }),
    maxAliasesPlugin({ n: OPERATION_LIMITS.aliases, exposeLimits: false }),
    maxDirectivesPlugin({ n: OPERATION_LIMITS.directives, exposeLimits: false }),
    costLimitPlugin({ maxCost: OPERATION_LIMITS.cost, exposeLimits: false }),
    ...(options.production ? [blockFieldSuggestionsPlugin()] : []),
  ] as Plugin[];
}
