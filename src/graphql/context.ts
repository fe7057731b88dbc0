import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../auth/token.service.js';
import type { RateLimit } from '../ratelimit/rate-limiter.js';
import type { Services } from '../services.js';

export interface GraphQLLimits {
  /** Per token, over every mutation field. */
  mutationRateLimit: RateLimit;
  /** Items held for a subscriber that is not reading, before events are dropped for it. */
  subscriptionBuffer: number;
}

/** Everything a resolver may use; built once per HTTP request or per WebSocket operation. */
export interface GraphQLContext {
  /** A fresh identity map for this operation: never the global EntityManager. */
  em: EntityManager;
  viewer: Viewer;
  /** The caller's bearer secret: only to seal the responses kept for idempotent retries. */
  credential: string;
  services: Services;
  requestId: string;
  limits: GraphQLLimits;
  /** Set when a mutation field of this operation threw (typed errors included). */
  mutationFailed: boolean;
}
