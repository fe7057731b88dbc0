import type { Role } from './api-token.entity.js';

/**
 * The scopes the schema asks for, and which roles hold them. Admin holds everything; every role can
 * read (viewer). Facilities manage the inventory; operators act on devices; integrations report
 * findings from SIEMs and detectors. A site token belongs to one site controller and holds no scope:
 * it may only send that site's heartbeats (SiteService checks the binding), never read the fleet.
 */
export const SCOPES = ['viewer', 'operator', 'facilities', 'integration', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

const GRANTS: Record<Role, readonly Scope[]> = {
  viewer: ['viewer'],
  operator: ['viewer', 'operator', 'integration'],
  facilities: ['viewer', 'facilities'],
  integration: ['viewer', 'integration'],
  admin: SCOPES,
  site: [],
};

export function roleHasScope(role: Role, scope: Scope): boolean {
  return GRANTS[role].includes(scope);
}
