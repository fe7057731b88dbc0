import type { EntityManager } from '@mikro-orm/postgresql';
import type { Clock } from '../shared/clock.js';
import { RateLimitedError } from '../shared/errors.js';

export interface RateLimit {
  /** Requests allowed per window. */
  limit: number;
  windowSeconds: number;
}

/**
 * Fixed-window counters in the database, so every instance behind a load balancer counts the same
 * requests. One upsert per check: the window restarts when it has expired, else the count grows.
 */
export class RateLimiter {
  constructor(private readonly clock: Clock) {}

  async hit(em: EntityManager, key: string, rule: RateLimit): Promise<void> {
    await this.hitAll(em, rule.windowSeconds, [{ key, limit: rule.limit }]);
  }

  /**
   * Counts one request against several keys (distinct, sharing a window length) in one upsert;
   * every key is counted, and the request is refused when any of them is over its limit.
   */
  async hitAll(
    em: EntityManager,
    windowSeconds: number,
    keys: ReadonlyArray<{ key: string; limit: number }>,
  ): Promise<void> {
    const now = this.clock.now();
    const windowMs = windowSeconds * 1000;
    // One order for everyone: two requests never wait on each other's rows in opposite orders.
    const sorted = [...keys].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const rows = await em.getConnection().execute<{ key: string; count: number; window_start: Date }[]>(
      `insert into rate_limit_window (key, window_start, count) values ${sorted.map(() => '(?, ?, 1)').join(', ')}
       on conflict (key) do update set
         count = case when rate_limit_window.window_start <= excluded.window_start - (? * interval '1 millisecond')
                      then 1 else rate_limit_window.count + 1 end,
         window_start = case when rate_limit_window.window_start <= excluded.window_start - (? * interval '1 millisecond')
                      then excluded.window_start else rate_limit_window.window_start end
       returning key, count, window_start`,
      [...sorted.flatMap(({ key }) => [key, now]), windowMs, windowMs],
      'all',
      em.getTransactionContext(),
    );
    const over = rows.filter((row) => row.count > sorted.find(({ key }) => key === row.key)!.limit);
    if (over.length === 0) return;
    // The caller may retry once every exceeded window has restarted.
    const resetsAt = Math.max(...over.map((row) => new Date(row.window_start).getTime() + windowMs));
    throw new RateLimitedError(
      `too many requests for ${over.map((row) => row.key.split(':')[0]).join(' and ')}; try again later`,
      Math.max(1, Math.ceil((resetsAt - now.getTime()) / 1000)),
    );
  }
}
