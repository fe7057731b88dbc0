import type { IncomingMessage } from 'node:http';
import { roleHasScope, type Scope } from '../auth/roles.js';
import { bearerFrom, type Viewer } from '../auth/token.service.js';
import type { Services } from '../services.js';
import { HttpProblem } from './errors.js';

/** Authenticates the bearer token of a REST request, whatever its role. */
export async function requireToken(services: Services, req: IncomingMessage): Promise<Viewer> {
  const token = bearerFrom(req.headers.authorization);
  const viewer = token ? await services.tokens.authenticate(services.database.orm.em.fork(), token) : null;
  if (!viewer) {
    throw new HttpProblem(401, 'unauthenticated', 'An operator token is required', {
      'www-authenticate': 'Bearer',
    });
  }
  return viewer;
}

/** Authenticates an operator token on a REST route and checks it holds `scope`. */
export async function requireScope(services: Services, req: IncomingMessage, scope: Scope): Promise<Viewer> {
  const viewer = await requireToken(services, req);
  if (!roleHasScope(viewer.role, scope))
    throw new HttpProblem(403, 'forbidden', `This needs the ${scope} role`);
  return viewer;
}

/** The peer address, for rate limits and the audit trail. */
export function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}
