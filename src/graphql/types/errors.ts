import {
  ConflictError,
  DeviceNotFoundError,
  ForbiddenError,
  InvalidTransitionError,
  NotFoundError,
  RateLimitedError,
  ValidationError,
  type DomainError,
} from '../../shared/errors.js';
import { builder } from '../builder.js';

/** Every domain error the API can return as data; each is a member of a mutation's result union. */
export const ErrorInterface = builder.interfaceRef<DomainError>('Error').implement({
  fields: (t) => ({
    message: t.exposeString('message'),
    code: t.exposeString('code'),
  }),
});

builder.objectType(NotFoundError, {
  name: 'NotFound',
  interfaces: [ErrorInterface],
  // Its subclasses have their own, more specific types.
  isTypeOf: (value) => value instanceof NotFoundError && !(value instanceof DeviceNotFoundError),
});

builder.objectType(DeviceNotFoundError, {
  name: 'DeviceNotFound',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof DeviceNotFoundError,
  fields: (t) => ({ deviceId: t.exposeString('deviceId') }),
});

builder.objectType(ConflictError, {
  name: 'Conflict',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof ConflictError,
});

builder.objectType(ForbiddenError, {
  name: 'Forbidden',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof ForbiddenError,
});

builder.objectType(ValidationError, {
  name: 'ValidationFailed',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof ValidationError,
  fields: (t) => ({ field: t.exposeString('field') }),
});

builder.objectType(InvalidTransitionError, {
  name: 'InvalidTransition',
  description: 'A lifecycle move the rules do not allow from the current state',
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof InvalidTransitionError,
  fields: (t) => ({ from: t.exposeString('from'), to: t.exposeString('to') }),
});

builder.objectType(RateLimitedError, {
  name: 'RateLimited',
  description: "Too many mutations for the caller's token; nothing was done",
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof RateLimitedError,
  fields: (t) => ({ retryAfterSeconds: t.exposeInt('retryAfterSeconds') }),
});
