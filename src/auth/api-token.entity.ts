import { EntitySchema } from '@mikro-orm/core';

export const ROLES = ['viewer', 'operator', 'facilities', 'integration', 'admin', 'site'] as const;
export type Role = (typeof ROLES)[number];

/** An operator, integration or site controller credential. Only the SHA-256 of the secret is stored. */
export class ApiToken {
  id!: string;
  name!: string;
  role!: Role;
  tokenHash!: string;
  createdAt!: Date;
  expiresAt: Date | null = null;
  revokedAt: Date | null = null;
  /** The one site a `site` token may speak for (heartbeats); null for every other role. */
  siteId: string | null = null;
}

export const ApiTokenSchema = new EntitySchema<ApiToken>({
  class: ApiToken,
  tableName: 'api_token',
  properties: {
    id: { type: 'uuid', primary: true },
    name: { type: 'string', length: 200 },
    role: { type: 'string', length: 32 },
    tokenHash: { type: 'string', length: 64, unique: true },
    createdAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    expiresAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    revokedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    siteId: { type: 'string', length: 64, nullable: true },
  },
});
