/**
 * Base of every error a domain rule raises on purpose. `code` is the category transports map to
 * their own shape (GraphQL union member, HTTP status); `reason` is a stable, specific slug (the
 * problem+json `type`, the audit detail). Anything that is not a DomainError is masked.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string;
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class NotFoundError extends DomainError {
  readonly code = 'NOT_FOUND';
  constructor(message: string, reason = 'not-found') {
    super(message, reason);
  }
}

export class ConflictError extends DomainError {
  readonly code = 'CONFLICT';
  constructor(message: string, reason = 'conflict') {
    super(message, reason);
  }
}

export class ForbiddenError extends DomainError {
  readonly code = 'FORBIDDEN';
  constructor(message: string, reason = 'forbidden') {
    super(message, reason);
  }
}

/** The caller's credential (an enrollment token, a client certificate) is missing or not valid. */
export class UnauthenticatedError extends DomainError {
  readonly code = 'UNAUTHENTICATED';
  constructor(message: string, reason = 'unauthenticated') {
    super(message, reason);
  }
}

export class RateLimitedError extends DomainError {
  readonly code = 'RATE_LIMITED';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message, 'rate-limited');
  }
}

export class ValidationError extends DomainError {
  readonly code = 'VALIDATION_FAILED';
  constructor(
    readonly field: string,
    message: string,
    reason = 'validation-failed',
  ) {
    super(message, reason);
  }
}

/** A move between lifecycle states that the rules do not allow. */
export class InvalidTransitionError extends DomainError {
  readonly code = 'INVALID_TRANSITION';
  constructor(
    readonly from: string,
    readonly to: string,
    message = `cannot go from ${from} to ${to}`,
  ) {
    super(message, 'invalid-transition');
  }
}

export class DeviceNotFoundError extends NotFoundError {
  constructor(readonly deviceId: string) {
    super(`device ${deviceId} not found`, 'device-not-found');
  }
}
