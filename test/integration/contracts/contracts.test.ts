import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPIC_TABLE } from '../../../src/mqtt/topics.js';
import { PROBLEM_BASE } from '../../../src/rest/problem.js';
import { startTestService, type TestService } from '../../support/service.js';

/** The parts of an OpenAPI 3.1 document this test reads. */
interface Reference {
  $ref: string;
}
interface Parameter {
  name: string;
  in: string;
}
interface Response {
  content?: Record<string, unknown>;
  headers?: Record<string, unknown>;
  'x-problem-types'?: string[];
}
interface Operation {
  parameters?: Array<Parameter | Reference>;
  responses: Record<string, Response | Reference>;
}
interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: { ProblemType: { enum: string[] } } & Record<string, ObjectSchema> };
}
interface ObjectSchema {
  properties?: Record<string, ObjectSchema | Reference>;
  items?: ObjectSchema | Reference;
}
interface AsyncApi {
  channels: Record<string, { address: string; parameters?: Record<string, unknown> }>;
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const schemaFile = (name: string) => fileURLToPath(new URL(`../../../schema/${name}`, import.meta.url));

let service: TestService;
let openapi: OpenApi;
let asyncapi: AsyncApi;
let rootCa: string;

beforeAll(async () => {
  [openapi, asyncapi, service] = await Promise.all([
    readFile(schemaFile('openapi.yaml'), 'utf8').then((text) => parse(text) as OpenApi),
    readFile(schemaFile('asyncapi.yaml'), 'utf8').then((text) => parse(text) as AsyncApi),
    startTestService({ mqtt: 'embedded' }),
  ]);
  rootCa = await readFile(path.join(service.dataDir, 'pki', 'root-ca.pem'), 'utf8');
});

afterAll(async () => {
  await service?.close();
});

function resolve<T>(value: T | Reference): T {
  if (typeof value !== 'object' || value === null || !('$ref' in value)) return value;
  const target = value.$ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], openapi);
  if (target === undefined) throw new Error(`unresolved ${value.$ref}`);
  return target as T;
}

function operations(): Array<{ method: string; path: string; operation: Operation }> {
  return Object.entries(openapi.paths).flatMap(([template, item]) =>
    Object.entries(item)
      .filter(([key]) => HTTP_METHODS.includes(key))
      .map(([method, operation]) => ({ method: method.toUpperCase(), path: template, operation })),
  );
}

const placeholders = (template: string) => [...template.matchAll(/\{(\w+)\}/g)].map((match) => match[1]!);

/** Every `$ref` anywhere in the document. */
function references(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(references);
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === '$ref' && typeof value === 'string' ? [value] : references(value),
  );
}

/** The property names a schema documents for an object, keyed by JSON path, down to nested objects. */
function documentedKeys(schema: ObjectSchema, at = '$'): Record<string, string[]> {
  const keys: Record<string, string[]> = {};
  if (schema.items) Object.assign(keys, documentedKeys(resolve(schema.items), `${at}[]`));
  if (!schema.properties) return keys;
  keys[at] = Object.keys(schema.properties).sort();
  for (const [name, property] of Object.entries(schema.properties))
    Object.assign(keys, documentedKeys(resolve(property), `${at}.${name}`));
  return keys;
}

/** The property names a JSON value has, keyed like documentedKeys (arrays by their first item). */
function actualKeys(value: unknown, at = '$'): Record<string, string[]> {
  if (Array.isArray(value)) return value.length > 0 ? actualKeys(value[0], `${at}[]`) : {};
  if (typeof value !== 'object' || value === null) return {};
  const keys: Record<string, string[]> = { [at]: Object.keys(value).sort() };
  for (const [name, property] of Object.entries(value))
    Object.assign(keys, actualKeys(property, `${at}.${name}`));
  return keys;
}

function send(
  url: string,
  method: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((done, fail) => {
    const client = url.startsWith('https:') ? https : http;
    const request = client.request(
      url,
      { method, ca: rootCa, headers: options.headers ?? {} },
      (response) => {
        let body = '';
        response.setEncoding('latin1');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => done({ status: response.statusCode ?? 0, headers: response.headers, body }));
      },
    );
    request.once('error', fail);
    request.end(options.body);
  });
}

describe('schema/openapi.yaml', () => {
  it('documents exactly the routes the service registers', () => {
    const served = service.app.routes.map((route) => `${route.method} ${route.path}`).sort();
    const documented = operations()
      .map(({ method, path: template }) => `${method} ${template}`)
      .sort();
    expect(new Set(served).size, 'a route registered twice').toBe(served.length);
    expect(documented).toEqual(served);
  });

  it('declares every path parameter of each template, and no others', () => {
    for (const { method, path: template, operation } of operations()) {
      const declared = (operation.parameters ?? [])
        .map((parameter) => resolve(parameter))
        .filter((parameter) => parameter.in === 'path')
        .map((parameter) => parameter.name);
      expect(declared.sort(), `${method} ${template}`).toEqual(placeholders(template).sort());
    }
  });

  it('resolves every $ref and lists only known problem types', () => {
    for (const ref of references(openapi)) expect(() => resolve({ $ref: ref }), ref).not.toThrow();
    const known = new Set(openapi.components.schemas.ProblemType.enum);
    expect(known.size).toBe(openapi.components.schemas.ProblemType.enum.length);
    for (const { method, path: template, operation } of operations()) {
      for (const [status, value] of Object.entries(operation.responses)) {
        const response = resolve(value);
        const content = Object.keys(response.content ?? {});
        const where = `${method} ${template} ${status}`;
        // A problem response says which problems it carries; only a problem response does. (Health's
        // 503 is its JSON report, not a problem.)
        const isProblem = content.includes('application/problem+json');
        if (isProblem) expect(content, where).toEqual(['application/problem+json']);
        expect(Boolean(response['x-problem-types']?.length), where).toBe(isProblem);
        if (Number(status) < 400) expect(isProblem, where).toBe(false);
        for (const slug of response['x-problem-types'] ?? [])
          expect(known, where).toContain(PROBLEM_BASE + slug);
      }
    }
  });

  it('matches what each route answers a request without credentials or body, on both listeners', async () => {
    for (const base of [service.app.urls.https, service.app.urls.http]) {
      for (const { method, path: template, operation } of operations()) {
        const url = base + template.replace(/\{\w+\}/g, 'contract-probe');
        const answer = await send(url, method);
        const where = `${method} ${url} -> ${answer.status} ${answer.body.slice(0, 200)}`;
        const documented = operation.responses[String(answer.status)];
        expect(documented, where).toBeDefined();
        const response = resolve(documented!);
        const mediaType = (answer.headers['content-type'] ?? '').split(';')[0]!.trim();
        const documentedTypes = Object.keys(response.content ?? {}).map((key) => key.split(';')[0]!.trim());
        expect(documentedTypes, where).toContain(mediaType);
        if (mediaType === 'application/problem+json') {
          const problem = JSON.parse(answer.body) as { type: string; status: number };
          expect(problem.status, where).toBe(answer.status);
          expect(
            response['x-problem-types']?.map((slug) => PROBLEM_BASE + slug),
            where,
          ).toContain(problem.type);
        }
        for (const header of Object.keys(response.headers ?? {}))
          expect(answer.headers[header.toLowerCase()], `${where}: ${header}`).toBeDefined();
      }
    }
  });

  it('answers another method on a documented path with 405 and the documented methods', async () => {
    const matches = (template: string, concrete: string) =>
      new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, '[^/]+')}$`).test(
        concrete,
      );
    for (const template of Object.keys(openapi.paths)) {
      const concrete = template.replace(/\{\w+\}/g, 'contract-probe');
      // OpenAPI matches a concrete path before templates that also match it (`/devices/import` is
      // not read as `/devices/{device_id}`); a path with parameters can match several templates.
      const literal = operations().filter((operation) => operation.path === concrete);
      const allowed = (literal.length > 0 ? literal : operations())
        .filter((operation) => matches(operation.path, concrete))
        .map((operation) => operation.method);
      const unused = HTTP_METHODS.find(
        (method) => !allowed.includes(method.toUpperCase()) && method !== 'head',
      )!;
      const answer = await send(service.app.urls.https + concrete, unused.toUpperCase());
      expect(answer.status, `${unused} ${template}`).toBe(405);
      expect(JSON.parse(answer.body)).toMatchObject({ type: `${PROBLEM_BASE}method-not-allowed` });
      expect(answer.headers.allow?.split(', ').sort(), template).toEqual([...new Set(allowed)].sort());
    }
    const unknown = await send(`${service.app.urls.https}/api/v1/contract-probe`, 'GET');
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toMatchObject({ type: `${PROBLEM_BASE}not-found` });
  });

  it('names the JSON fields the handlers write', async () => {
    const facilities = await service.token('facilities');
    const auth = { authorization: `Bearer ${facilities}` };
    const api = `${service.app.urls.https}/api/v1`;
    const checks: Array<[string, Promise<{ status: number; body: string }>]> = [
      [
        'RegistrationResult',
        send(`${api}/cps/devices`, 'POST', {
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ device_id: 'contract-plc-1', device_type: 'PLC' }),
        }),
      ],
      [
        'ImportReport',
        send(`${api}/cps/devices/import`, 'POST', {
          headers: { ...auth, 'content-type': 'text/csv' },
          body: 'device_id,device_type\ncontract-rtu-1,RTU\ncontract-bad-1,TOASTER\n',
        }),
      ],
      ['RuntimeSettings', send(`${api}/settings/runtime`, 'GET', { headers: auth })],
    ];
    for (const [name, request] of checks) {
      const answer = await request;
      expect(answer.status, `${name}: ${answer.body}`).toBeLessThan(300);
      const body = JSON.parse(answer.body) as unknown;
      // Every object the handler wrote has exactly the documented names (nullable objects sent as null aside).
      const documented = documentedKeys(openapi.components.schemas[name]!);
      for (const [at, keys] of Object.entries(actualKeys(body)))
        if (documented[at]) expect(keys, `${name} ${at}`).toEqual(documented[at]);
    }
  });
});

describe('schema/asyncapi.yaml', () => {
  it('has one channel per entry of the MQTT topic table, at its template', () => {
    const channels = Object.fromEntries(
      Object.entries(asyncapi.channels).map(([id, channel]) => [id, channel.address]),
    );
    const table = Object.fromEntries(
      Object.entries(TOPIC_TABLE).map(([kind, spec]) => [kind, spec.template]),
    );
    expect(channels).toEqual(table);
  });

  it("declares each channel's address parameters", () => {
    for (const [id, channel] of Object.entries(asyncapi.channels))
      expect(Object.keys(channel.parameters ?? {}).sort(), id).toEqual(placeholders(channel.address).sort());
  });
});
