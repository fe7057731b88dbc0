import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PkiError, SERVICE_COMMON_NAME, SERVICE_URI, type IssuedCredential } from '../../../src/pki/index.js';
import { createTestCa, type TestCa } from './ca.fixture.js';
import { openssl, opensslOk } from '../../support/openssl.js';

let testCa: TestCa;
let server: IssuedCredential;
let tlsServer: Server;
let port: number;

beforeAll(async () => {
  testCa = await createTestCa();
  server = await testCa.ca.issueServerCertificate({
    commonName: 'fleetproof',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  tlsServer = createServer(
    { key: server.privateKeyPem, cert: server.certificatePem + testCa.ca.issuingPem },
    (socket) => socket.end(),
  );
  tlsServer.listen(0, '127.0.0.1');
  await once(tlsServer, 'listening');
  port = (tlsServer.address() as AddressInfo).port;
});
afterAll(async () => {
  tlsServer.close();
  await testCa.scratch.remove();
});

const sClient = (...verifyArgs: string[]) =>
  openssl([
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    '-servername',
    'localhost',
    '-verify_return_error',
    '-CAfile',
    testCa.rootPath,
    ...verifyArgs,
  ]);

describe('issueServerCertificate', () => {
  it('is accepted by openssl s_client for localhost and 127.0.0.1 with only the root as trust anchor', async () => {
    for (const args of [
      ['-verify_hostname', 'localhost'],
      ['-verify_ip', '127.0.0.1'],
    ]) {
      const result = await sClient(...args);
      expect(result.stdout).toContain('Verify return code: 0 (ok)');
      expect(result.code).toBe(0);
    }
  });

  it('is refused for a name it was not issued for', async () => {
    const result = await sClient('-verify_hostname', 'fleetproof.example');
    expect(result.code).not.toBe(0);
    expect(`${result.stdout}${result.stderr}`).toMatch(/hostname mismatch/i);
  });

  it('verifies with openssl verify and carries serverAuth with the requested names only', async () => {
    const leafPath = await testCa.scratch.write('server.pem', server.certificatePem);
    const chainPath = await testCa.scratch.write('chain.pem', server.chainPem);
    const verified = await opensslOk([
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-verify_hostname',
      'localhost',
      '-CAfile',
      testCa.rootPath,
      '-untrusted',
      chainPath,
      leafPath,
    ]);
    expect(verified).toContain(': OK');
    const text = await opensslOk(
      ['x509', '-noout', '-ext', 'subjectAltName,extendedKeyUsage'],
      server.certificatePem,
    );
    expect(text).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1\n/);
    expect(text).toMatch(/TLS Web Server Authentication\n/);
    expect(server.privateKeyPem).toContain('-----BEGIN PRIVATE KEY-----');
  });

  it.each([
    { dnsNames: ['bad name'], ipAddresses: [] },
    { dnsNames: [], ipAddresses: ['300.1.1.1'] },
    { dnsNames: [], ipAddresses: ['fe80::1%eth0'] },
    { dnsNames: [], ipAddresses: [] },
  ])('refuses invalid names %j', async (names) => {
    await expect(testCa.ca.issueServerCertificate({ commonName: 'fleetproof', ...names })).rejects.toSatisfy(
      (error) => error instanceof PkiError && error.code === 'INVALID_INPUT',
    );
  });
});

describe('issueServiceClientCertificate', () => {
  it('carries the service identity the broker recognises', async () => {
    const credential = await testCa.ca.issueServiceClientCertificate('node-a');
    const text = await opensslOk(
      ['x509', '-noout', '-subject', '-ext', 'subjectAltName,extendedKeyUsage,basicConstraints'],
      credential.certificatePem,
    );
    expect(text).toContain(`CN = ${SERVICE_COMMON_NAME}`);
    expect(text).toContain('OU = node-a');
    expect(text).toMatch(new RegExp(`X509v3 Subject Alternative Name: *\\n +URI:${SERVICE_URI}\\n`));
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n +TLS Web Client Authentication\n/);
    expect(text).toContain('CA:FALSE');

    const leafPath = await testCa.scratch.write('service.pem', credential.certificatePem);
    const verified = await opensslOk([
      'verify',
      '-purpose',
      'sslclient',
      '-CAfile',
      testCa.rootPath,
      '-untrusted',
      testCa.issuingPath,
      leafPath,
    ]);
    expect(verified).toContain(': OK');
  });
});
