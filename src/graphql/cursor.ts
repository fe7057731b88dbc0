import { GraphQLError } from 'graphql';

/**
 * Opaque cursors over a monotonically increasing key (a sequence number or an id), so a connector can
 * resume exactly where it stopped. The prefix stops a cursor of one list being replayed on another.
 */
export function encodeCursor(kind: string, key: string): string {
  return Buffer.from(`${kind}:${key}`, 'utf8').toString('base64url');
}

export function decodeCursor(kind: string, cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const prefix = `${kind}:`;
  if (!text.startsWith(prefix) || text.length === prefix.length) {
    throw new GraphQLError(`Invalid cursor for ${kind}`, { extensions: { code: 'INVALID_CURSOR' } });
  }
  return text.slice(prefix.length);
}

export const PAGE_SIZE = { default: 50, max: 500 } as const;
