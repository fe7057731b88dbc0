/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "query AuditEvents($first: Int, $after: String) {\n  auditEvents(first: $first, after: $after) {\n    edges {\n      cursor\n      node {\n        seq\n        action\n        actor\n        subject\n        details\n        occurredAt\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nsubscription AuditEventsLive {\n  auditEvents {\n    seq\n    action\n    subject\n    cursor\n  }\n}": typeof types.AuditEventsDocument,
    "query Viewer {\n  viewer {\n    name\n    role\n  }\n}\n\nquery ServiceInfo {\n  serviceInfo {\n    version\n    database\n    rootCaFingerprint\n  }\n}": typeof types.ViewerDocument,
    "mutation CreateApiToken($name: String!, $role: Role!, $expiresAt: DateTime) {\n  createApiToken(name: $name, role: $role, expiresAt: $expiresAt) {\n    __typename\n    ... on MutationCreateApiTokenSuccess {\n      data {\n        token\n        apiToken {\n          id\n          name\n          role\n        }\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}\n\nmutation RevokeApiToken($id: ID!) {\n  revokeApiToken(id: $id) {\n    __typename\n    ... on MutationRevokeApiTokenSuccess {\n      data {\n        id\n        revokedAt\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}": typeof types.CreateApiTokenDocument,
};
const documents: Documents = {
    "query AuditEvents($first: Int, $after: String) {\n  auditEvents(first: $first, after: $after) {\n    edges {\n      cursor\n      node {\n        seq\n        action\n        actor\n        subject\n        details\n        occurredAt\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nsubscription AuditEventsLive {\n  auditEvents {\n    seq\n    action\n    subject\n    cursor\n  }\n}": types.AuditEventsDocument,
    "query Viewer {\n  viewer {\n    name\n    role\n  }\n}\n\nquery ServiceInfo {\n  serviceInfo {\n    version\n    database\n    rootCaFingerprint\n  }\n}": types.ViewerDocument,
    "mutation CreateApiToken($name: String!, $role: Role!, $expiresAt: DateTime) {\n  createApiToken(name: $name, role: $role, expiresAt: $expiresAt) {\n    __typename\n    ... on MutationCreateApiTokenSuccess {\n      data {\n        token\n        apiToken {\n          id\n          name\n          role\n        }\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}\n\nmutation RevokeApiToken($id: ID!) {\n  revokeApiToken(id: $id) {\n    __typename\n    ... on MutationRevokeApiTokenSuccess {\n      data {\n        id\n        revokedAt\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}": types.CreateApiTokenDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query AuditEvents($first: Int, $after: String) {\n  auditEvents(first: $first, after: $after) {\n    edges {\n      cursor\n      node {\n        seq\n        action\n        actor\n        subject\n        details\n        occurredAt\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nsubscription AuditEventsLive {\n  auditEvents {\n    seq\n    action\n    subject\n    cursor\n  }\n}"): (typeof documents)["query AuditEvents($first: Int, $after: String) {\n  auditEvents(first: $first, after: $after) {\n    edges {\n      cursor\n      node {\n        seq\n        action\n        actor\n        subject\n        details\n        occurredAt\n      }\n    }\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n  }\n}\n\nsubscription AuditEventsLive {\n  auditEvents {\n    seq\n    action\n    subject\n    cursor\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query Viewer {\n  viewer {\n    name\n    role\n  }\n}\n\nquery ServiceInfo {\n  serviceInfo {\n    version\n    database\n    rootCaFingerprint\n  }\n}"): (typeof documents)["query Viewer {\n  viewer {\n    name\n    role\n  }\n}\n\nquery ServiceInfo {\n  serviceInfo {\n    version\n    database\n    rootCaFingerprint\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation CreateApiToken($name: String!, $role: Role!, $expiresAt: DateTime) {\n  createApiToken(name: $name, role: $role, expiresAt: $expiresAt) {\n    __typename\n    ... on MutationCreateApiTokenSuccess {\n      data {\n        token\n        apiToken {\n          id\n          name\n          role\n        }\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}\n\nmutation RevokeApiToken($id: ID!) {\n  revokeApiToken(id: $id) {\n    __typename\n    ... on MutationRevokeApiTokenSuccess {\n      data {\n        id\n        revokedAt\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}"): (typeof documents)["mutation CreateApiToken($name: String!, $role: Role!, $expiresAt: DateTime) {\n  createApiToken(name: $name, role: $role, expiresAt: $expiresAt) {\n    __typename\n    ... on MutationCreateApiTokenSuccess {\n      data {\n        token\n        apiToken {\n          id\n          name\n          role\n        }\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}\n\nmutation RevokeApiToken($id: ID!) {\n  revokeApiToken(id: $id) {\n    __typename\n    ... on MutationRevokeApiTokenSuccess {\n      data {\n        id\n        revokedAt\n      }\n    }\n    ... on Error {\n      code\n      message\n    }\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;