import {
  resolveCursorConnection,
  type DefaultConnectionArguments,
  type ResolveCursorConnectionArgs,
} from '@pothos/plugin-relay';
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

/**
 * The key of a cursor over a key that only grows (a seq, a case number): a decimal integer, so a
 * forged cursor is refused here as INVALID_CURSOR rather than failing in the database.
 */
export function decodeSequenceCursor(kind: string, cursor: string): string {
  const key = decodeCursor(kind, cursor);
  if (!/^\d{1,18}$/.test(key)) {
    throw new GraphQLError(`Invalid cursor for ${kind}`, { extensions: { code: 'INVALID_CURSOR' } });
  }
  return key;
}

export const PAGE_SIZE = { default: 50, max: 500 } as const;

/**
 * The page-size options of every connection. Asking for more than the cap is refused rather than
 * trimmed, so a connector that asks for 1,000 rows learns the limit instead of mistaking a trimmed
 * page for the size it asked for.
 */
function pageWindow(args: DefaultConnectionArguments) {
  for (const name of ['first', 'last'] as const) {
    const size = args[name];
    if (typeof size === 'number' && size > PAGE_SIZE.max) {
      throw new GraphQLError(`${name} must be at most ${PAGE_SIZE.max}`, {
        extensions: { code: 'PAGE_SIZE_EXCEEDED', max: PAGE_SIZE.max },
      });
    }
  }
  return { args, defaultSize: PAGE_SIZE.default, maxSize: PAGE_SIZE.max };
}

/**
 * One keyset page of a connection: the size checked against the cap, `load` asked for one row more
 * than the page (Pothos' way of knowing whether another page follows). An empty first page reports
 * null cursors, as Relay specifies, not the empty string a client would send back and be refused for.
 */
export async function keysetConnection<T>(
  args: DefaultConnectionArguments,
  toCursor: (row: T) => string,
  load: (page: ResolveCursorConnectionArgs) => Promise<T[]>,
) {
  const connection = await resolveCursorConnection<Promise<T[]>>({ ...pageWindow(args), toCursor }, load);
  const { startCursor, endCursor } = connection.pageInfo;
  return {
    ...connection,
    pageInfo: { ...connection.pageInfo, startCursor: startCursor || null, endCursor: endCursor || null },
  };
}
