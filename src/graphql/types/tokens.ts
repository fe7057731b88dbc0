import type { ApiToken } from '../../auth/api-token.entity.js';
import { actorOf } from '../../auth/token.service.js';
import { NotFoundError, ValidationError } from '../../shared/errors.js';
import { builder } from '../builder.js';
import { RoleEnum } from './system.js';

const ApiTokenRef = builder.objectRef<ApiToken>('ApiToken').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    role: t.field({ type: RoleEnum, resolve: (token) => token.role.toUpperCase() }),
    createdAt: t.field({ type: 'DateTime', resolve: (token) => token.createdAt }),
    expiresAt: t.field({ type: 'DateTime', nullable: true, resolve: (token) => token.expiresAt }),
    revokedAt: t.field({ type: 'DateTime', nullable: true, resolve: (token) => token.revokedAt }),
    siteId: t.exposeString('siteId', { nullable: true, description: 'The site a SITE token speaks for' }),
  }),
});

const CreatedApiToken = builder.simpleObject('CreatedApiToken', {
  fields: (t) => ({
    token: t.string({ description: 'The secret; shown once, never stored' }),
    apiToken: t.field({ type: ApiTokenRef }),
  }),
});

builder.mutationField('createApiToken', (t) =>
  t.field({
    type: CreatedApiToken,
    authScopes: { admin: true },
    errors: { types: [ValidationError] },
    args: {
      name: t.arg.string({ required: true }),
      role: t.arg({ type: RoleEnum, required: true }),
      site: t.arg.string({
        description: 'Required for role SITE, refused otherwise: the one site it heartbeats',
      }),
      expiresAt: t.arg({ type: 'DateTime' }),
    },
    resolve: async (_root, args, context) => {
      const { token, record } = await context.services.tokens.create(context.em, {
        name: args.name,
        role: args.role.toLowerCase(),
        siteId: args.site ?? null,
        ...(args.expiresAt ? { expiresAt: args.expiresAt } : {}),
        actor: actorOf(context.viewer),
      });
      return { token, apiToken: record };
    },
  }),
);

builder.mutationField('revokeApiToken', (t) =>
  t.field({
    type: ApiTokenRef,
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.tokens.revoke(context.em, { id: String(args.id), actor: actorOf(context.viewer) }),
  }),
);
