import { ROLES } from '../../auth/api-token.entity.js';
import { builder } from '../builder.js';

const RoleEnum = builder.enumType('Role', { values: ROLES.map((role) => role.toUpperCase()) });

builder.queryField('viewer', (t) =>
  t.field({
    type: builder.simpleObject('Viewer', {
      fields: (f) => ({ name: f.string(), role: f.field({ type: RoleEnum }) }),
    }),
    description: 'The caller, as identified by its token',
    resolve: (_root, _args, context) => ({
      name: context.viewer.name,
      role: context.viewer.role.toUpperCase(),
    }),
  }),
);

builder.queryField('serviceInfo', (t) =>
  t.field({
    type: builder.simpleObject('ServiceInfo', {
      fields: (f) => ({
        version: f.string(),
        database: f.string({ description: 'postgresql or embedded' }),
        rootCaFingerprint: f.string({ description: 'SHA-256 of the root CA certificate (DER), hex' }),
      }),
    }),
    resolve: (_root, _args, context) => context.services.serviceInfo,
  }),
);

export { RoleEnum };
