import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../observability/logger.js';
import { problem, sendProblem } from './problem.js';

export interface RouteRequest {
  raw: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
  /** True when the request arrived over the HTTPS listener. */
  secure: boolean;
  logger: Logger;
}

export type RouteHandler = (request: RouteRequest) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  name: string;
  handler: RouteHandler;
}

/**
 * A small route table: `/api/v1/cps/devices/{device_id}` style paths, one handler per method.
 * Unknown paths are 404 and known paths with another method are 405, both as problem+json; a
 * concrete path is matched before the templates that would also match it.
 */
export class Router {
  readonly #routes: Route[] = [];

  add(method: string, path: string, handler: RouteHandler): this {
    const keys: string[] = [];
    const source = path
      .split('/')
      .map((segment) => {
        const param = /^\{(\w+)\}$/.exec(segment);
        if (!param) return segment.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
        keys.push(param[1]!);
        return '([^/]+)';
      })
      .join('/');
    const pattern = new RegExp(`^${source}$`);
    this.#routes.push({ method, pattern, keys, name: path, handler });
    return this;
  }

  /** The route table as registered (method and path template), for the OpenAPI contract test. */
  routes(): Array<{ method: string; path: string }> {
    return this.#routes.map((route) => ({ method: route.method, path: route.name }));
  }

  /** Returns the matched route's name (for metrics), or undefined when nothing matched. */
  async handle(raw: IncomingMessage, res: ServerResponse, logger: Logger): Promise<string | undefined> {
    const url = new URL(raw.url ?? '/', 'http://localhost');
    const templated = this.#routes.filter((route) => route.pattern.test(url.pathname));
    if (templated.length === 0) return undefined;
    // As OpenAPI matches paths: a concrete path wins over a template that also matches it, so
    // `GET /devices/import` is a 405 of the import route, not a read of a device named "import".
    const concrete = templated.filter((route) => route.keys.length === 0);
    const matches = concrete.length > 0 ? concrete : templated;
    const route = matches.find((candidate) => candidate.method === raw.method);
    if (!route) {
      sendProblem(res, problem(405, 'method-not-allowed', 'Method not allowed'), {
        allow: [...new Set(matches.map((m) => m.method))].join(', '),
      });
      return matches[0]!.name;
    }
    const values = route.pattern.exec(url.pathname)!.slice(1);
    const params = Object.fromEntries(
      route.keys.map((key, index) => [key, decodeURIComponent(values[index]!)]),
    );
    const secure = Boolean((raw.socket as Partial<TLSSocket>).encrypted);
    await route.handler({ raw, res, url, params, secure, logger });
    return route.name;
  }
}
