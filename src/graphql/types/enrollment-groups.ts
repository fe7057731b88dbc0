import { X509Certificate } from 'node:crypto';
import { actorOf } from '../../auth/token.service.js';
import type { EnrollmentGroup } from '../../enrollment/enrollment-group.entity.js';
import type { EnrollmentGroupInput } from '../../enrollment/enrollment-group.service.js';
import { ConflictError, NotFoundError, ValidationError } from '../../shared/errors.js';
import { builder } from '../builder.js';
import { CriticalityEnum, DeviceTypeEnum } from './devices.js';

const EnrollmentGroupRef = builder.objectRef<EnrollmentGroup>('EnrollmentGroup').implement({
  description: 'Zero-touch enrollment for devices with a manufacturer (IEEE 802.1AR IDevID) certificate',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    chainPems: t.exposeStringList('chainPems', { description: 'The trust-anchor chain, PEM, root first' }),
    chainSubjects: t.stringList({
      description: 'Subjects of the chain certificates, for display',
      resolve: (group) =>
        group.chainPems.map((pem) => new X509Certificate(pem).subject.replaceAll('\n', ', ')),
    }),
    representativeFingerprint: t.exposeString('representativeFingerprint', {
      description: 'SHA-256 (hex) of the chain certificate that stands for this group',
    }),
    allowCommonNames: t.exposeStringList('allowCommonNames'),
    denyCommonNames: t.exposeStringList('denyCommonNames'),
    defaultDeviceType: t.field({ type: DeviceTypeEnum, resolve: (group) => group.defaultDeviceType }),
    defaultCriticality: t.field({ type: CriticalityEnum, resolve: (group) => group.defaultCriticality }),
    defaultSite: t.string({ nullable: true, resolve: (group) => group.defaultSiteId }),
    autoApprove: t.exposeBoolean('autoApprove'),
    createdAt: t.field({ type: 'DateTime', resolve: (group) => group.createdAt }),
    updatedAt: t.field({ type: 'DateTime', resolve: (group) => group.updatedAt }),
  }),
});

const EnrollmentGroupInputRef = builder.inputType('EnrollmentGroupInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    chainPems: t.stringList({ required: true }),
    representativeFingerprint: t.string({ required: true }),
    allowCommonNames: t.stringList(),
    denyCommonNames: t.stringList(),
    defaultDeviceType: t.field({ type: DeviceTypeEnum }),
    defaultCriticality: t.field({ type: CriticalityEnum }),
    defaultSite: t.string(),
    autoApprove: t.boolean({ description: 'Approve matched devices at enrollment (off by default)' }),
  }),
});

function toServiceInput(input: typeof EnrollmentGroupInputRef.$inferInput): EnrollmentGroupInput {
  return {
    name: input.name,
    chainPems: input.chainPems,
    representativeFingerprint: input.representativeFingerprint,
    ...(input.allowCommonNames ? { allowCommonNames: input.allowCommonNames } : {}),
    ...(input.denyCommonNames ? { denyCommonNames: input.denyCommonNames } : {}),
    ...(input.defaultDeviceType ? { defaultDeviceType: input.defaultDeviceType } : {}),
    ...(input.defaultCriticality ? { defaultCriticality: input.defaultCriticality } : {}),
    defaultSiteId: input.defaultSite ?? null,
    ...(input.autoApprove !== null && input.autoApprove !== undefined
      ? { autoApprove: input.autoApprove }
      : {}),
  };
}

builder.queryField('enrollmentGroups', (t) =>
  t.field({
    type: [EnrollmentGroupRef],
    authScopes: { admin: true },
    resolve: (_root, _args, context) => context.services.enrollmentGroups.list(context.em),
  }),
);

builder.mutationField('createEnrollmentGroup', (t) =>
  t.field({
    type: EnrollmentGroupRef,
    authScopes: { admin: true },
    errors: { types: [ValidationError, ConflictError] },
    args: { input: t.arg({ type: EnrollmentGroupInputRef, required: true }) },
    resolve: (_root, args, context) =>
      context.services.enrollmentGroups.create(
        context.em,
        toServiceInput(args.input),
        actorOf(context.viewer),
      ),
  }),
);

builder.mutationField('updateEnrollmentGroup', (t) =>
  t.field({
    type: EnrollmentGroupRef,
    authScopes: { admin: true },
    errors: { types: [ValidationError, NotFoundError] },
    args: {
      id: t.arg.id({ required: true }),
      input: t.arg({ type: EnrollmentGroupInputRef, required: true }),
    },
    resolve: (_root, args, context) =>
      context.services.enrollmentGroups.update(
        context.em,
        String(args.id),
        toServiceInput(args.input),
        actorOf(context.viewer),
      ),
  }),
);

builder.mutationField('deleteEnrollmentGroup', (t) =>
  t.field({
    type: EnrollmentGroupRef,
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, context) =>
      context.services.enrollmentGroups.delete(context.em, String(args.id), actorOf(context.viewer)),
  }),
);
