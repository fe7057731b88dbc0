import { PkiError } from './pki.errors.js';

/**
 * A strict DER (X.690) reader for the certificates this CA itself issued (the issuing CA's own
 * certificate, when extensions are prepared, and names in tests). Untrusted input never comes here:
 * device CSRs are decoded with @peculiar/asn1-csr (csr.codec.ts). It still rejects BER freedoms
 * (indefinite or non-minimal lengths, trailing bytes).
 */
export interface Tlv {
  readonly tag: number;
  /** The whole element, tag and length included: what a signature or a hash covers. */
  readonly bytes: Buffer;
  readonly content: Buffer;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function malformed(message: string): PkiError {
  return new PkiError('DER_MALFORMED', message);
}

function readTlvAt(buffer: Buffer, offset: number): Tlv {
  const tag = buffer[offset];
  const first = buffer[offset + 1];
  if (tag === undefined || first === undefined) throw malformed('truncated element');
  if ((tag & 0x1f) === 0x1f) throw malformed('high tag numbers are not used here');
  let length = first;
  let header = 2;
  if (first >= 0x80) {
    const count = first & 0x7f;
    if (count === 0) throw malformed('indefinite length is BER, not DER');
    if (count > 4) throw malformed('element too long');
    length = 0;
    for (let i = 0; i < count; i++) {
      const byte = buffer[offset + 2 + i];
      if (byte === undefined) throw malformed('truncated length');
      length = length * 256 + byte;
    }
    if (length < 0x80 || buffer[offset + 2] === 0) throw malformed('non-minimal length');
    header += count;
  }
  const end = offset + header + length;
  if (end > buffer.length) throw malformed('element runs past the end of its parent');
  return {
    tag,
    bytes: buffer.subarray(offset, end),
    content: buffer.subarray(offset + header, end),
  };
}

/** Reads exactly one element that spans the whole buffer. */
export function readDer(buffer: Buffer, expectedTag?: number): Tlv {
  const tlv = readTlvAt(buffer, 0);
  if (tlv.bytes.length !== buffer.length) throw malformed('trailing bytes after the element');
  if (expectedTag !== undefined) expectTag(tlv, expectedTag);
  return tlv;
}

export function derChildren(parent: Tlv): Tlv[] {
  if ((parent.tag & 0x20) === 0) throw malformed(`tag 0x${parent.tag.toString(16)} is not constructed`);
  const items: Tlv[] = [];
  for (let offset = 0; offset < parent.content.length;) {
    const child = readTlvAt(parent.content, offset);
    items.push(child);
    offset += child.bytes.length;
  }
  return items;
}

export function expectTag(tlv: Tlv | undefined, tag: number): Tlv {
  if (!tlv) throw malformed(`missing element with tag 0x${tag.toString(16)}`);
  if (tlv.tag !== tag) throw malformed(`expected tag 0x${tag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  return tlv;
}

export function decodeOid(tlv: Tlv): string {
  expectTag(tlv, 0x06);
  const arcs: bigint[] = [];
  let value = 0n;
  let pending = false;
  for (const byte of tlv.content) {
    if (!pending && byte === 0x80) throw malformed('non-minimal OID arc');
    value = (value << 7n) | BigInt(byte & 0x7f);
    pending = (byte & 0x80) !== 0;
    if (!pending) {
      arcs.push(value);
      value = 0n;
    }
  }
  const [head, ...rest] = arcs;
  if (head === undefined || pending) throw malformed('truncated OID');
  const first = head < 80n ? head / 40n : 2n;
  return [first, head - first * 40n, ...rest].join('.');
}

/** BIT STRING bytes; only whole-octet values (keys, signatures) occur where this is used. */
export function decodeOctetAlignedBitString(tlv: Tlv): Buffer {
  expectTag(tlv, 0x03);
  if (tlv.content[0] !== 0) throw malformed('BIT STRING with unused bits');
  return tlv.content.subarray(1);
}

/**
 * DirectoryString and the string types names and PKCS#9 attributes use. Returns undefined for
 * encodings we do not read (UniversalString, ...) so callers decide whether that is fatal.
 */
export function decodeDirectoryString(tlv: Tlv): string | undefined {
  switch (tlv.tag) {
    case 0x0c:
      try {
        return strictUtf8.decode(tlv.content);
      } catch (error) {
        throw new PkiError('DER_MALFORMED', 'invalid UTF-8 in UTF8String', { cause: error });
      }
    case 0x13:
    case 0x16:
      if (tlv.content.some((byte) => byte > 0x7f)) throw malformed('non-ASCII byte in an ASCII string');
      return tlv.content.toString('latin1');
    case 0x14:
      return tlv.content.toString('latin1');
    case 0x1e:
      if (tlv.content.length % 2) throw malformed('odd-length BMPString');
      return Buffer.from(tlv.content).swap16().toString('utf16le');
    default:
      return undefined;
  }
}
