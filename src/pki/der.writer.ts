/**
 * The few DER (X.690) encodings that certificates, CRLs and certs-only PKCS#7 need. Certificates are
 * assembled from these rather than through a generic ASN.1 object model: issuance is on the enrollment
 * hot path, and building bytes directly keeps the signed TBS exactly what the issuance profile says.
 */

const encodedOids = new Map<string, Buffer>();

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function derTlv(tag: number, content: Uint8Array | readonly Uint8Array[]): Buffer {
  const body = content instanceof Uint8Array ? content : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const derSequence = (...items: Uint8Array[]): Buffer => derTlv(0x30, items);
export const derSet = (...items: Uint8Array[]): Buffer => derTlv(0x31, items);
export const derOctetString = (bytes: Uint8Array): Buffer => derTlv(0x04, bytes);
export const derUtf8String = (text: string): Buffer => derTlv(0x0c, Buffer.from(text, 'utf8'));
export const derNull = (): Buffer => Buffer.from([0x05, 0x00]);
export const derBoolean = (value: boolean): Buffer => derTlv(0x01, Buffer.from([value ? 0xff : 0x00]));

/** [n] EXPLICIT: a constructed context tag wrapping complete TLVs. */
export const derExplicit = (tagNumber: number, ...items: Uint8Array[]): Buffer =>
  derTlv(0xa0 | tagNumber, items);

/** [n] IMPLICIT on a primitive type: the context tag replaces the universal one. */
export const derImplicitPrimitive = (tagNumber: number, content: Uint8Array): Buffer =>
  derTlv(0x80 | tagNumber, content);

export const derBitString = (bytes: Uint8Array, unusedBits = 0): Buffer =>
  derTlv(0x03, [Buffer.from([unusedBits]), bytes]);

/** A non-negative INTEGER from its big-endian magnitude, in the minimal two's-complement form. */
export function derUnsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const needsPad = trimmed.length === 0 || (trimmed[0] ?? 0) >= 0x80;
  return derTlv(0x02, needsPad ? [Buffer.from([0]), trimmed] : trimmed);
}

export function derInteger(value: bigint | number): Buffer {
  const big = BigInt(value);
  if (big < 0n) throw new RangeError('negative INTEGER not supported');
  const hex = big.toString(16);
  return derUnsignedInteger(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'));
}

export const derEnumerated = (value: number): Buffer => {
  const integer = derInteger(value);
  integer[0] = 0x0a;
  return integer;
};

export function derOid(dotted: string): Buffer {
  const cached = encodedOids.get(dotted);
  if (cached) return cached;
  const arcs = dotted.split('.').map((arc) => BigInt(arc));
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined) throw new RangeError(`bad OID ${dotted}`);
  const bytes: number[] = [];
  for (const arc of [first * 40n + second, ...rest]) {
    const chunk = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...chunk);
  }
  const encoded = derTlv(0x06, Buffer.from(bytes));
  encodedOids.set(dotted, encoded);
  return encoded;
}

/** RFC 5280 4.1.2.5: UTCTime for years 1950-2049, GeneralizedTime from 2050; whole seconds, Zulu. */
export function derTime(date: Date): Buffer {
  const iso = date.toISOString();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050
    ? derTlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii'))
    : derTlv(0x18, Buffer.from(`${digits}Z`, 'ascii'));
}
