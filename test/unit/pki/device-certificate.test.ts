import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateCommonName,
  decodeCsr,
  pemToDer,
  PkiError,
  sha256Hex,
  spkiSha256Hex,
  verifyCsr,
  type ParsedCsr,
  type PkiErrorCode,
} from '../../../src/pki/index.js';
import { createTestCa, CRL_URL, type TestCa } from './ca.fixture.js';
import { opensslCsr, opensslOk } from '../../support/openssl.js';

const CDI = `sha256:${'5a'.repeat(32)}`;
const DAY_MS = 86_400_000;

let testCa: TestCa;
let greedyCsr: ParsedCsr;

beforeAll(async () => {
  testCa = await createTestCa();
  const { csrPem } = await opensslCsr(testCa.scratch, 'greedy', {
    newkey: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    subject: '/CN=someone-else/O=Evil Corp',
    addext: [
      'basicConstraints=critical,CA:TRUE',
      'keyUsage=critical,keyCertSign,cRLSign',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:evil.example,IP:10.0.0.1,URI:urn:fleetproof:service',
    ],
  });
  greedyCsr = decodeCsr(csrPem);
  verifyCsr(greedyCsr);
});
afterAll(() => testCa.scratch.remove());

async function rejection(promise: Promise<unknown>): Promise<PkiErrorCode | 'resolved'> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    if (error instanceof PkiError) return error.code;
    throw error;
  }
}

const x509Text = (pem: string) => opensslOk(['x509', '-noout', '-text'], pem);

describe('issueDeviceCertificate', () => {
  it('follows the device profile and ignores everything the CSR asked for', async () => {
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-42',
      cdiCommitment: CDI,
    });
    const text = await x509Text(issued.pem);

    expect(text).toMatch(/Subject: CN = dev-42\n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name: *\n +URI:urn:dice:cdi:sha256:(5a){32}\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n +TLS Web Client Authentication\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n +Digital Signature\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n +CA:FALSE\n/);
    expect(text).toContain(`URI:${CRL_URL}`);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    for (const requested of [
      'CA:TRUE',
      'Certificate Sign',
      'Server Authentication',
      'DNS:',
      'IP Address',
      'fleetproof:service',
      'Evil',
      'someone-else',
    ]) {
      expect(text).not.toContain(requested);
    }
  });

  it('chains to the root for OpenSSL', async () => {
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-42',
      cdiCommitment: CDI,
    });
    const leafPath = await testCa.scratch.write('leaf.pem', issued.pem);
    const out = await opensslOk([
      'verify',
      '-x509_strict',
      '-purpose',
      'sslclient',
      '-CAfile',
      testCa.rootPath,
      '-untrusted',
      testCa.issuingPath,
      leafPath,
    ]);
    expect(out).toBe(`${leafPath}: OK\n`);
  });

  it('reports serial, validity and fingerprints as OpenSSL sees them', async () => {
    const now = new Date('2027-03-01T12:00:00.500Z');
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-42',
      cdiCommitment: CDI,
      now,
    });
    const other = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-42',
      cdiCommitment: CDI,
      now,
    });

    expect(issued.serialHex).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(issued.serialHex).not.toBe(other.serialHex);
    const out = await opensslOk(
      ['x509', '-noout', '-serial', '-enddate', '-fingerprint', '-sha256'],
      issued.pem,
    );
    expect(out).toContain(`serial=${issued.serialHex.toUpperCase()}`);
    expect(out).toContain('notAfter=Mar 31 12:00:00 2027 GMT');
    expect(issued.notAfter.toISOString()).toBe('2027-03-31T12:00:00.000Z');
    expect(issued.notBefore.getTime()).toBeLessThanOrEqual(now.getTime());
    const fingerprint = /Fingerprint=([0-9A-F:]+)/.exec(out)?.[1]?.replaceAll(':', '').toLowerCase();
    expect(issued.fingerprintSha256).toBe(fingerprint);
    expect(issued.fingerprintSha256).toBe(sha256Hex(issued.der));
    expect(issued.der.equals(pemToDer(issued.pem, 'CERTIFICATE'))).toBe(true);

    const publicKeyPem = await opensslOk(['x509', '-noout', '-pubkey'], issued.pem);
    expect(issued.spkiSha256).toBe(sha256Hex(pemToDer(publicKeyPem, 'PUBLIC KEY')));
    expect(issued.spkiSha256).toBe(greedyCsr.spkiSha256);
    expect(spkiSha256Hex(new X509Certificate(issued.der))).toBe(issued.spkiSha256);
    expect(certificateCommonName(issued.pem)).toBe('dev-42');
  });

  it('never outlives the issuing CA', async () => {
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-42',
      cdiCommitment: CDI,
      validityDays: 3650,
    });
    expect(issued.notAfter.getTime()).toBe(Date.parse(testCa.ca.issuingCertificate.validTo));
    expect(issued.notAfter.getTime() - Date.now()).toBeGreaterThan(4 * 365 * DAY_MS);
  });

  it('verifies a CSR that was not verified before, so proof of possession cannot be skipped', async () => {
    const der = Buffer.from(greedyCsr.der);
    der[der.length - 1] = (der.at(-1) ?? 0) ^ 0x01;
    const unverified = decodeCsr(der);
    expect(
      await rejection(
        testCa.ca.issueDeviceCertificate({ csr: unverified, deviceId: 'dev-42', cdiCommitment: CDI }),
      ),
    ).toBe('CSR_BAD_SIGNATURE');
  });

  it.each([
    ['the service name as device id', 'fleetproof-service', CDI],
    ['MQTT wildcards in the device id', 'dev/+/#', CDI],
    ['an empty device id', '', CDI],
    ['a device id over 64 characters', 'd'.repeat(65), CDI],
    ['an uppercase commitment', 'dev-42', CDI.toUpperCase()],
    ['a short commitment', 'dev-42', 'sha256:abcd'],
    ['another hash', 'dev-42', `sha1:${'ab'.repeat(20)}`],
  ])('refuses %s', async (_case, deviceId, cdiCommitment) => {
    expect(
      await rejection(testCa.ca.issueDeviceCertificate({ csr: greedyCsr, deviceId, cdiCommitment })),
    ).toBe('INVALID_INPUT');
  });
});

describe('verifyChain', () => {
  it('accepts an issued leaf (DER or PEM) within its validity', async () => {
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-7',
      cdiCommitment: CDI,
    });
    const fromDer = testCa.ca.verifyChain(issued.der);
    expect(fromDer.ok && fromDer.certificate.serialNumber.toLowerCase()).toBe(issued.serialHex);
    expect(testCa.ca.verifyChain(issued.pem).ok).toBe(true);
  });

  it('reports why a certificate does not chain', async () => {
    const issued = await testCa.ca.issueDeviceCertificate({
      csr: greedyCsr,
      deviceId: 'dev-7',
      cdiCommitment: CDI,
    });
    const stranger = await createTestCa();
    try {
      const foreign = await stranger.ca.issueDeviceCertificate({
        csr: greedyCsr,
        deviceId: 'dev-7',
        cdiCommitment: CDI,
      });
      expect(testCa.ca.verifyChain(foreign.der)).toEqual({ ok: false, reason: 'unknown-issuer' });
    } finally {
      await stranger.scratch.remove();
    }
    const tampered = Buffer.from(issued.der);
    tampered[tampered.length - 1] = (tampered.at(-1) ?? 0) ^ 0x01;
    expect(testCa.ca.verifyChain(tampered)).toEqual({ ok: false, reason: 'bad-signature' });
    expect(testCa.ca.verifyChain(issued.der, new Date(issued.notAfter.getTime() + 1000))).toEqual({
      ok: false,
      reason: 'expired',
    });
    expect(testCa.ca.verifyChain(issued.der, new Date(issued.notBefore.getTime() - 1000))).toEqual({
      ok: false,
      reason: 'not-yet-valid',
    });
    expect(testCa.ca.verifyChain(testCa.ca.issuingPem)).toEqual({ ok: false, reason: 'not-a-leaf' });
    expect(testCa.ca.verifyChain(Buffer.from('garbage'))).toEqual({ ok: false, reason: 'undecodable' });
  });
});
