import type { ServerResponse } from 'node:http';
import { DomainError, RateLimitedError, ValidationError } from '../shared/errors.js';
import { problem, sendProblem } from './problem.js';

const STATUS_BY_CODE: Record<string, number> = {
  NOT_FOUND: 404,
  CONFLICT: 409,
  INVALID_TRANSITION: 409,
  FORBIDDEN: 403,
  UNAUTHENTICATED: 401,
  RATE_LIMITED: 429,
  VALIDATION_FAILED: 400,
};

/** A problem the transport itself detects (size, media type, scheme) before any domain call. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(title);
  }
}

/**
 * The one place REST errors take their shape: domain errors become RFC 9457 problems whose `type` is
 * the error's stable reason; anything else propagates and is masked as a 500 by the app.
 */
export function renderError(
  res: ServerResponse,
  error: unknown,
  headers: Record<string, string> = {},
): boolean {
  if (error instanceof HttpProblem) {
    sendProblem(res, problem(error.status, error.slug, error.title), { ...error.headers, ...headers });
    return true;
  }
  if (!(error instanceof DomainError)) return false;
  const status = STATUS_BY_CODE[error.code] ?? 400;
  const extra: Record<string, unknown> = { code: error.code };
  if (error instanceof ValidationError) extra.field = error.field;
  const responseHeaders = { ...headers };
  // RFC 9110 11.6.1: a 401 names the schemes that would work. Domain 401s are the EST token refusals,
  // where both a Bearer token and Basic (device id, token) are accepted; a stock EST client that
  // waits for a challenge before sending Basic needs it.
  if (status === 401) responseHeaders['www-authenticate'] ??= 'Basic realm="fleetproof", Bearer';
  if (error instanceof RateLimitedError) responseHeaders['retry-after'] = String(error.retryAfterSeconds);
  sendProblem(res, problem(status, error.reason, titleFor(status), error.message, extra), responseHeaders);
  return true;
}

function titleFor(status: number): string {
  switch (status) {
    case 400:
      return 'Bad request';
    case 401:
      return 'Not authenticated';
    case 403:
      return 'Forbidden';
    case 404:
      return 'Not found';
    case 409:
      return 'Conflict';
    case 429:
      return 'Too many requests';
    default:
      return 'Error';
  }
}

/** Wraps a route so that domain errors and transport problems render as problem+json. */
export function withProblems<R extends { res: ServerResponse }>(handler: (request: R) => Promise<void>) {
  return async (request: R): Promise<void> => {
    try {
      await handler(request);
    } catch (error) {
      if (!renderError(request.res, error)) throw error;
    }
  };
}
