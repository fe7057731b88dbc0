import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificatesPkcs7,
  decodeCsr,
  pemToDer,
  PkiError,
  toBase64Lines,
  verifyCsr,
  type IssuedDeviceCertificate,
} from '../../../src/pki/index.js';
import { createTestCa, type TestCa } from './ca.fixture.js';
import { openssl, opensslBinary, opensslCsr, opensslOk } from '../../support/openssl.js';

let testCa: TestCa;
let leaf: IssuedDeviceCertificate;

beforeAll(async () => {
  testCa = await createTestCa();
  const { csrPem } = await opensslCsr(testCa.scratch, 'device', {
    newkey: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  });
  const csr = decodeCsr(csrPem);
  verifyCsr(csr);
  leaf = await testCa.ca.issueDeviceCertificate({
    csr,
    deviceId: 'dev-1',
    cdiCommitment: `sha256:${'00'.repeat(32)}`,
  });
});
afterAll(() => testCa.scratch.remove());

/** The certificates OpenSSL finds in a DER PKCS#7, as DER. */
async function pkcs7Certificates(der: Buffer): Promise<Buffer[]> {
  const printed = await opensslOk(['pkcs7', '-inform', 'DER', '-print_certs'], der);
  return [...printed.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map(([pem]) =>
    pemToDer(pem, 'CERTIFICATE'),
  );
}

describe('certs-only PKCS#7', () => {
  it('cacerts holds the issuing CA then the root, readable by openssl pkcs7', async () => {
    const certificates = await pkcs7Certificates(testCa.ca.cacertsPkcs7());
    expect(certificates).toHaveLength(2);
    expect(certificates[0]?.equals(testCa.ca.issuingCertificate.raw)).toBe(true);
    expect(certificates[1]?.equals(testCa.ca.rootCertificate.raw)).toBe(true);
  });

  it('carries no signer and no content', async () => {
    const printed = await opensslOk(
      ['pkcs7', '-inform', 'DER', '-print', '-noout'],
      testCa.ca.cacertsPkcs7(),
    );
    expect(printed).toMatch(/signer_info:\s*<EMPTY>/);
    expect(printed).toMatch(/d\.data: <ABSENT>/);
  });

  it('wraps the base64 so that openssl base64 -d decodes it, with LF or CRLF', async () => {
    const der = testCa.ca.cacertsPkcs7();
    for (const eol of ['\n', '\r\n'] as const) {
      const wrapped = toBase64Lines(der, 64, eol);
      const lines = wrapped.split(eol);
      expect(lines.at(-1)).toBe('');
      expect(lines.slice(0, -2).every((line) => line.length === 64)).toBe(true);
      expect((await opensslBinary(['base64', '-d'], wrapped.replaceAll('\r\n', '\n'))).equals(der)).toBe(
        true,
      );
    }
  });

  it('holds an issued leaf for the simpleenroll response', async () => {
    const certificates = await pkcs7Certificates(certificatesPkcs7([leaf.der]));
    expect(certificates).toHaveLength(1);
    expect(certificates[0]?.equals(leaf.der)).toBe(true);
  });
});

describe('createCrl', () => {
  const thisUpdate = new Date('2027-01-01T00:00:00Z');
  const nextUpdate = new Date('2027-01-02T00:00:00Z');

  it('lists revoked serials with reasons and verifies against the issuing CA', async () => {
    const crl = await testCa.ca.createCrl({
      revoked: [
        { serialHex: leaf.serialHex, revokedAt: new Date('2026-12-31T10:00:00Z'), reasonCode: 1 },
        { serialHex: '0abc', revokedAt: new Date('2026-12-31T11:00:00Z'), reasonCode: 4 },
        { serialHex: 'ff01', revokedAt: new Date('2026-12-31T12:00:00Z'), reasonCode: 0 },
      ],
      thisUpdate,
      nextUpdate,
      crlNumber: 42n,
    });
    const crlPath = await testCa.scratch.write('crl.der', crl);

    const text = await opensslOk(['crl', '-inform', 'DER', '-in', crlPath, '-noout', '-text']);
    expect(text).toContain(`Serial Number: ${leaf.serialHex.toUpperCase()}`);
    expect(text).toMatch(
      /Serial Number: 0ABC\n +Revocation Date: Dec 31 11:00:00 2026 GMT\n +CRL entry extensions:\n +X509v3 CRL Reason Code: *\n +Superseded/,
    );
    expect(text).toMatch(/Key Compromise/);
    // RFC 5280 5.3.1: "unspecified" is written as no reason extension at all.
    expect(text).toMatch(
      /Serial Number: FF01\n +Revocation Date: Dec 31 12:00:00 2026 GMT\n +Signature Algorithm/,
    );
    expect(text).toMatch(/X509v3 CRL Number: *\n +42\n/);
    expect(text).toContain('X509v3 Authority Key Identifier');
    expect(text).toContain('Last Update: Jan  1 00:00:00 2027 GMT');
    expect(text).toContain('Next Update: Jan  2 00:00:00 2027 GMT');

    const verified = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      crlPath,
      '-noout',
      '-verify',
      '-CAfile',
      testCa.issuingPath,
    ]);
    expect(verified.stderr).toContain('verify OK');
    const wrongIssuer = await openssl([
      'crl',
      '-inform',
      'DER',
      '-in',
      crlPath,
      '-noout',
      '-verify',
      '-CAfile',
      testCa.rootPath,
    ]);
    expect(wrongIssuer.stderr).not.toContain('verify OK');
  });

  it('encodes an empty CRL without a revoked list', async () => {
    const crl = await testCa.ca.createCrl({ revoked: [], thisUpdate, nextUpdate, crlNumber: 1 });
    const text = await opensslOk(['crl', '-inform', 'DER', '-noout', '-text'], crl);
    expect(text).toContain('No Revoked Certificates.');
  });

  it.each([
    ['an unassigned reason', [{ serialHex: '01', revokedAt: thisUpdate, reasonCode: 7 }], nextUpdate],
    ['a delta-only reason', [{ serialHex: '01', revokedAt: thisUpdate, reasonCode: 8 }], nextUpdate],
    [
      'a serial listed twice',
      [
        { serialHex: '01', revokedAt: thisUpdate, reasonCode: 1 },
        { serialHex: '0001', revokedAt: thisUpdate, reasonCode: 1 },
      ],
      nextUpdate,
    ],
    ['a serial that is not hex', [{ serialHex: 'xyz', revokedAt: thisUpdate, reasonCode: 1 }], nextUpdate],
    ['nextUpdate before thisUpdate', [], thisUpdate],
  ])('refuses %s', async (_case, revoked, next) => {
    await expect(
      testCa.ca.createCrl({ revoked, thisUpdate, nextUpdate: next, crlNumber: 2 }),
    ).rejects.toSatisfy((error) => error instanceof PkiError && error.code === 'INVALID_INPUT');
  });
});
