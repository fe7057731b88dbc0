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
    const now = this.clock.now();
    const windowMs = rule.windowSeconds * 1000;
    const [row] = await em.getConnection().execute<{ count: number; window_start: Date }[]>(
      `insert into rate_limit_window (key, window_start, count) values (?, ?, 1)
       on conflict (key) do update set
         count = case when rate_limit_window.window_start <= ?::timestamptz - (? * interval '1 millisecond')
                      then 1 else rate_limit_window.count + 1 end,
         window_start = case when rate_limit_window.window_start <= ?::timestamptz - (? * interval '1 millisecond')
                      then excluded.window_start else rate_limit_window.window_start end
       returning count, window_start`,
      [key, now, now, windowMs, now, windowMs],
      'all',
      em.getTransactionContext(),
    );
    if (row && row.count > rule.limit) {
      const resetsAt = new Date(row.window_start).getTime() + windowMs;
      throw new RateLimitedError(
        `too many requests for ${key.split(':')[0]}; try again later`,
        Math.max(1, Math.ceil((resetsAt - now.getTime()) / 1000)),
      );
    }
  }
}
