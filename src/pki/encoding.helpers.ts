import { createHash } from 'node:crypto';
import { PkiError } from './pki.errors.js';

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Base64 wrapped into lines, each ending with `eol`. EST bodies (RFC 7030 4.1.3, 4.2.3) must be
 * wrapped: given one long line, `openssl base64 -d` outputs nothing and reports no error.
 */
export function toBase64Lines(der: Uint8Array, lineLength = 64, eol: '\n' | '\r\n' = '\n'): string {
  const base64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let out = '';
  for (let i = 0; i < base64.length; i += lineLength) out += base64.slice(i, i + lineLength) + eol;
  return out;
}

export function derToPem(der: Uint8Array, label: string): string {
  return `-----BEGIN ${label}-----\n${toBase64Lines(der)}-----END ${label}-----\n`;
}

const pemBlocks = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*?)-----END \1-----/g;

/** The DER of the first PEM block in `pem` (the first one labelled `label` when given). */
export function pemToDer(pem: string, label?: string): Buffer {
  for (const [, blockLabel, body] of pem.matchAll(pemBlocks)) {
    if (label === undefined || blockLabel === label) {
      return Buffer.from((body ?? '').replace(/\s+/g, ''), 'base64');
    }
  }
  throw new PkiError('DER_MALFORMED', `no ${label ?? 'PEM'} block found`);
}
