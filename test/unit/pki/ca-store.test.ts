import { X509Certificate } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CA_FILES,
  loadOrCreateCertificateAuthority,
  PkiError,
  type PkiErrorCode,
} from '../../../src/pki/index.js';
import { CRL_URL, fakeLogger, PASSPHRASE } from './ca.fixture.js';
import { opensslOk, scratchDir, type Scratch } from '../../support/openssl.js';

let scratch: Scratch;
let dir: string;

beforeEach(async () => {
  scratch = await scratchDir();
  dir = join(scratch.dir, 'ca');
});
afterEach(() => scratch.remove());

const load = (passphrase?: string, logger = fakeLogger()) =>
  loadOrCreateCertificateAuthority({
    dir,
    logger,
    crlUrl: CRL_URL,
    ...(passphrase === undefined ? {} : { passphrase }),
  });

async function codeOf(promise: Promise<unknown>): Promise<PkiErrorCode | 'resolved'> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    if (error instanceof PkiError) return error.code;
    throw error;
  }
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('loadOrCreateCertificateAuthority', () => {
  it('creates a P-384 root and a P-256 issuing CA with keys encrypted at rest', async () => {
    const ca = await load(PASSPHRASE);

    expect(await mode(dir)).toBe(0o700);
    for (const key of [CA_FILES.rootKey, CA_FILES.issuingKey]) {
      const pem = await readFile(join(dir, key), 'utf8');
      expect(pem).toContain('-----BEGIN ENCRYPTED PRIVATE KEY-----');
      expect(await mode(join(dir, key))).toBe(0o600);
    }
    const root = new X509Certificate(await readFile(join(dir, CA_FILES.rootCertificate)));
    const issuing = new X509Certificate(await readFile(join(dir, CA_FILES.issuingCertificate)));
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(issuing.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(root.fingerprint256.replaceAll(':', '').toLowerCase()).toBe(ca.rootFingerprintSha256);
    expect(ca.chainPem).toBe(ca.issuingPem + ca.rootPem);

    const rootText = await opensslOk(['x509', '-noout', '-text', '-in', join(dir, CA_FILES.rootCertificate)]);
    expect(rootText).toMatch(/CA:TRUE, pathlen:1/);
    expect(rootText).toMatch(/Certificate Sign, CRL Sign/);
    const issuingText = await opensslOk([
      'x509',
      '-noout',
      '-text',
      '-in',
      join(dir, CA_FILES.issuingCertificate),
    ]);
    expect(issuingText).toMatch(/CA:TRUE, pathlen:0/);
    const verify = await opensslOk([
      'verify',
      '-x509_strict',
      '-CAfile',
      join(dir, CA_FILES.rootCertificate),
      join(dir, CA_FILES.issuingCertificate),
    ]);
    expect(verify).toContain(': OK');
    expect((await readdir(dir)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('reuses the same CA on the next start', async () => {
    const first = await load(PASSPHRASE);
    const second = await load(PASSPHRASE);
    expect(second.rootFingerprintSha256).toBe(first.rootFingerprintSha256);
    expect(second.issuingPem).toBe(first.issuingPem);
  });

  it('refuses a wrong passphrase with a typed error', async () => {
    await load(PASSPHRASE);
    await expect(load('not the passphrase')).rejects.toThrow(/wrong CA passphrase/);
    expect(await codeOf(load('not the passphrase'))).toBe('CA_PASSPHRASE_INVALID');
    expect(await codeOf(load(''))).toBe('CA_PASSPHRASE_INVALID');
  });

  it('without a passphrase generates one into ca-passphrase (0600), warns without logging it, and reuses it', async () => {
    const logger = fakeLogger();
    const first = await load(undefined, logger);

    const passphraseFile = join(dir, CA_FILES.passphrase);
    const stored = (await readFile(passphraseFile, 'utf8')).trim();
    expect(stored).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await mode(passphraseFile)).toBe(0o600);
    expect(logger.warn).toHaveBeenCalledWith(
      expect.anything(),
      expect.stringContaining('FLEETPROOF_CA_PASSPHRASE'),
    );
    expect(JSON.stringify([logger.warn.mock.calls, logger.info.mock.calls])).not.toContain(stored);

    const second = await load();
    expect(second.rootFingerprintSha256).toBe(first.rootFingerprintSha256);
    expect(await codeOf(load(stored))).toBe('resolved');
  });

  it('does not invent a passphrase for keys that already exist', async () => {
    await load();
    await rm(join(dir, CA_FILES.passphrase));
    expect(await codeOf(load())).toBe('CA_PASSPHRASE_MISSING');
    expect((await readdir(dir)).includes(CA_FILES.passphrase)).toBe(false);
  });

  it('completes a creation interrupted after the root, under the same root', async () => {
    const first = await load(PASSPHRASE);
    await rm(join(dir, CA_FILES.issuingCertificate));
    await rm(join(dir, CA_FILES.issuingKey));

    const second = await load(PASSPHRASE);
    expect(second.rootFingerprintSha256).toBe(first.rootFingerprintSha256);
    expect(second.issuingPem).not.toBe(first.issuingPem);
    const verify = await opensslOk([
      'verify',
      '-CAfile',
      join(dir, CA_FILES.rootCertificate),
      join(dir, CA_FILES.issuingCertificate),
    ]);
    expect(verify).toContain(': OK');
  });

  it('replaces a key left without its certificate by a crash', async () => {
    const first = await load(PASSPHRASE);
    await rm(join(dir, CA_FILES.rootCertificate));
    await rm(join(dir, CA_FILES.issuingCertificate));
    await rm(join(dir, CA_FILES.issuingKey));

    const second = await load(PASSPHRASE);
    expect(second.rootFingerprintSha256).not.toBe(first.rootFingerprintSha256);
  });

  it('refuses a store with an issuing CA but no root, or a certificate without its key', async () => {
    await load(PASSPHRASE);
    await rm(join(dir, CA_FILES.issuingKey));
    expect(await codeOf(load(PASSPHRASE))).toBe('CA_STORE_CORRUPT');
    await rm(join(dir, CA_FILES.rootCertificate));
    expect(await codeOf(load(PASSPHRASE))).toBe('CA_STORE_CORRUPT');
  });
});
