import { actorOf } from '../../auth/token.service.js';
import type { PolicyBundle } from '../../policy/policy-bundle.entity.js';
import { ValidationError } from '../../shared/errors.js';
import { builder } from '../builder.js';
import { CriticalityEnum, DeviceTypeEnum } from './devices.js';

const ApprovedFirmwareRef = builder.simpleObject('ApprovedFirmware', {
  fields: (t) => ({
    model: t.string(),
    version: t.string(),
    hash: t.string({ description: '`sha256:` + 64 lowercase hex' }),
    latest: t.boolean(),
  }),
});

const PolicyBundleRef = builder.objectRef<PolicyBundle>('PolicyBundle').implement({
  description: 'A published, immutable version of the policy for one device type',
  fields: (t) => ({
    deviceType: t.field({ type: DeviceTypeEnum, resolve: (bundle) => bundle.deviceType }),
    version: t.exposeInt('version'),
    publishedAt: t.field({ type: 'DateTime', resolve: (bundle) => bundle.publishedAt }),
    publishedBy: t.exposeString('publishedBy'),
    digest: t.exposeString('digest', { description: 'SHA-256 (hex) of the RFC 8785 canonical document' }),
    stale: t.boolean({
      description: 'Older than its maxAgeDays: scores it produces say so',
      resolve: (bundle, _args, context) => context.services.policies.isStale(bundle),
    }),
    maxAgeDays: t.int({ resolve: (bundle) => bundle.document.maxAgeDays }),
    defaultCriticality: t.field({
      type: CriticalityEnum,
      resolve: (bundle) => bundle.document.defaultCriticality,
    }),
    halfLifeHours: t.float({ resolve: (bundle) => bundle.document.risk.halfLifeHours }),
    approvedFirmware: t.field({
      type: [ApprovedFirmwareRef],
      resolve: (bundle) =>
        Object.entries(bundle.document.firmware).flatMap(([model, listed]) =>
          listed.versions.map((entry) => ({ model, ...entry, latest: entry.version === listed.latest })),
        ),
    }),
    document: t.field({
      type: 'JSON',
      description: 'The whole bundle, as published',
      resolve: (bundle) => bundle.document,
    }),
  }),
});

builder.queryField('policyBundle', (t) =>
  t.field({
    type: PolicyBundleRef,
    nullable: true,
    authScopes: { viewer: true },
    description:
      'The current bundle of a device type; null while none is published (the default policy applies)',
    args: { deviceType: t.arg({ type: DeviceTypeEnum, required: true }) },
    resolve: async (_root, args, context) =>
      (await context.services.policies.effective(context.em, args.deviceType)).bundle,
  }),
);

builder.queryField('policyBundleHistory', (t) =>
  t.field({
    type: [PolicyBundleRef],
    authScopes: { viewer: true },
    description: 'Every published version of a device type, newest first',
    args: { deviceType: t.arg({ type: DeviceTypeEnum, required: true }) },
    resolve: (_root, args, context) => context.services.policies.history(context.em, args.deviceType),
  }),
);

const PublishPolicyBundleInput = builder.inputType('PublishPolicyBundleInput', {
  fields: (t) => ({
    deviceType: t.field({ type: DeviceTypeEnum, required: true }),
    document: t.field({
      type: 'JSON',
      required: true,
      description: 'The bundle, as described by schema/policy-bundle.schema.json',
    }),
  }),
});

builder.mutationField('publishPolicyBundle', (t) =>
  t.field({
    type: PolicyBundleRef,
    authScopes: { admin: true },
    description:
      'Validates and publishes the next version; devices of the type are rescored in the background',
    errors: { types: [ValidationError] },
    args: { input: t.arg({ type: PublishPolicyBundleInput, required: true }) },
    resolve: (_root, { input }, context) =>
      context.services.policies.publish(
        context.em,
        input.deviceType,
        input.document,
        actorOf(context.viewer),
      ),
  }),
);
