import { describe, expect, it } from 'vitest';
import { decodeOid, derChildren, readDer } from '../../../src/pki/der.reader.js';
import {
  derInteger,
  derOctetString,
  derOid,
  derSequence,
  derTime,
  derUnsignedInteger,
} from '../../../src/pki/der.writer.js';
import { derToPem, pemToDer, PkiError, sha256Hex, toBase64Lines } from '../../../src/pki/index.js';
import { opensslOk } from '../../support/openssl.js';

const codeOf = (action: () => unknown): string => {
  try {
    action();
    return 'no error';
  } catch (error) {
    return error instanceof PkiError ? error.code : 'other error';
  }
};

describe('DER writer', () => {
  it('writes minimal two-complement INTEGERs', () => {
    expect(derInteger(0).toString('hex')).toBe('020100');
    expect(derInteger(127).toString('hex')).toBe('02017f');
    expect(derInteger(128).toString('hex')).toBe('02020080');
    expect(derUnsignedInteger(Buffer.from('0000ff01', 'hex')).toString('hex')).toBe('020300ff01');
    expect(derInteger(2n ** 64n).toString('hex')).toBe('0209010000000000000000');
  });

  it('writes OIDs and long lengths that OpenSSL reads back', async () => {
    const oid = '1.2.840.113549.1.9.14';
    const long = derSequence(derOid(oid), derOctetString(Buffer.alloc(300)), derOid('2.999.1'));
    expect(long.subarray(0, 4).toString('hex')).toBe('30820140');
    const [first, octets, last] = derChildren(readDer(long, 0x30));
    expect(first && decodeOid(first)).toBe(oid);
    expect(octets?.content.length).toBe(300);
    expect(last && decodeOid(last)).toBe('2.999.1');
    const printed = await opensslOk(['asn1parse', '-inform', 'DER'], long);
    expect(printed).toContain('Extension Request');
    expect(printed).toContain('OCTET STRING      [HEX DUMP]:0000');
  });

  it('switches from UTCTime to GeneralizedTime in 2050 (RFC 5280 4.1.2.5)', () => {
    expect(derTime(new Date('2049-12-31T23:59:59.900Z')).toString('latin1').slice(2)).toBe('491231235959Z');
    expect(derTime(new Date('2049-12-31T23:59:59Z'))[0]).toBe(0x17);
    expect(derTime(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2)).toBe('20500101000000Z');
    expect(derTime(new Date('2050-01-01T00:00:00Z'))[0]).toBe(0x18);
  });
});

describe('DER reader', () => {
  it('refuses BER freedoms and truncation', () => {
    expect(codeOf(() => readDer(Buffer.from('3080020100000', 'hex')))).toBe('DER_MALFORMED');
    expect(codeOf(() => readDer(Buffer.from('308103020100', 'hex')))).toBe('DER_MALFORMED');
    expect(codeOf(() => readDer(Buffer.from('3003020100ff', 'hex')))).toBe('DER_MALFORMED');
    expect(codeOf(() => readDer(Buffer.from('300402010', 'hex')))).toBe('DER_MALFORMED');
    expect(codeOf(() => derChildren(readDer(Buffer.from('3004020500', 'hex'))))).toBe('DER_MALFORMED');
    expect(derChildren(readDer(Buffer.from('3003020100', 'hex')))).toHaveLength(1);
  });
});

describe('PEM and base64 helpers', () => {
  const der = Buffer.from(Array.from({ length: 200 }, (_, i) => i));

  it('round-trips PEM and picks the block with the requested label', () => {
    const pem = derToPem(der, 'CERTIFICATE');
    expect(pem.endsWith('-----END CERTIFICATE-----\n')).toBe(true);
    expect(pemToDer(pem).equals(der)).toBe(true);
    const bundle = derToPem(Buffer.from([1, 2, 3]), 'PUBLIC KEY') + pem;
    expect(pemToDer(bundle, 'CERTIFICATE').equals(der)).toBe(true);
    expect(codeOf(() => pemToDer(bundle, 'X509 CRL'))).toBe('DER_MALFORMED');
  });

  it('wraps base64 at the requested width', () => {
    const lines = toBase64Lines(der, 76, '\r\n').split('\r\n');
    expect(lines.map((line) => line.length)).toEqual([76, 76, 76, 40, 0]);
    expect(Buffer.from(lines.join(''), 'base64').equals(der)).toBe(true);
  });

  it('hashes with SHA-256', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
