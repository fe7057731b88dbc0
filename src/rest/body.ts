import type { IncomingMessage } from 'node:http';
import { HttpProblem } from './errors.js';

/**
 * Reads a request body up to `limit` bytes. A larger body is refused with 413 as soon as it crosses
 * the limit (declared or streamed), so an oversized upload is never buffered whole.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpProblem(413, 'payload-too-large', `The body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw new HttpProblem(413, 'payload-too-large', `The body exceeds ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The media type without parameters, lower-cased (`application/pkcs10; charset=x` -> `application/pkcs10`). */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  if (mediaType(req) !== 'application/json') {
    throw new HttpProblem(415, 'unsupported-media-type', 'Send Content-Type: application/json');
  }
  const body = await readBody(req, limit);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new HttpProblem(400, 'malformed-json', 'The body is not valid JSON');
  }
}
