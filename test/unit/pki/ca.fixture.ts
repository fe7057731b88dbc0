import { vi } from 'vitest';
import {
  loadOrCreateCertificateAuthority,
  type CertificateAuthority,
  type PkiLogger,
} from '../../../src/pki/index.js';
import { scratchDir, type Scratch } from '../../support/openssl.js';

export const CRL_URL = 'https://127.0.0.1:8443/api/v1/cps/crl';
export const PASSPHRASE = 'correct horse battery staple';

export function fakeLogger() {
  return {
    warn: vi.fn<PkiLogger['warn']>(),
    info: vi.fn<PkiLogger['info']>(),
  };
}

export interface TestCa {
  readonly ca: CertificateAuthority;
  readonly scratch: Scratch;
  readonly rootPath: string;
  readonly issuingPath: string;
}

/** A fresh CA in a temp directory, with its certificates also written where OpenSSL can read them. */
export async function createTestCa(): Promise<TestCa> {
  const scratch = await scratchDir();
  const ca = await loadOrCreateCertificateAuthority({
    dir: `${scratch.dir}/ca`,
    passphrase: PASSPHRASE,
    logger: fakeLogger(),
    crlUrl: CRL_URL,
  });
  return {
    ca,
    scratch,
    rootPath: `${scratch.dir}/ca/root-ca.pem`,
    issuingPath: `${scratch.dir}/ca/issuing-ca.pem`,
  };
}
