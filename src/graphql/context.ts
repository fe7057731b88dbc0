import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../auth/token.service.js';
import type { Services } from '../services.js';

/** Everything a resolver may use; built once per HTTP request or per WebSocket operation. */
export interface GraphQLContext {
  /** A fresh identity map for this operation: never the global EntityManager. */
  em: EntityManager;
  viewer: Viewer;
  services: Services;
  requestId: string;
}
