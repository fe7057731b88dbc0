import type { ServerResponse } from 'node:http';

/** RFC 9457 problem details. `type` is a stable URN clients can switch on. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

export const PROBLEM_BASE = 'urn:fleetproof:problem:';

export function problem(
  status: number,
  slug: string,
  title: string,
  detail?: string,
  extra?: Record<string, unknown>,
): Problem {
  return { type: PROBLEM_BASE + slug, title, status, ...(detail ? { detail } : {}), ...extra };
}

export function sendProblem(res: ServerResponse, value: Problem, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(value.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
