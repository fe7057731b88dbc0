import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface IssuedCert {
  keyPem: string;
  certPem: string;
  /** Leaf followed by its issuing CA when there is one (what a TLS peer sends). */
  chainPem: string;
}

export interface TestCa extends IssuedCert {
  dir: string;
  name: string;
}

/**
 * Throwaway PKI made by the real `openssl` CLI in a temporary directory (P-256 keys, 1-day validity).
 * Call `cleanup()` in afterAll.
 */
export class OpensslTestPki {
  private constructor(readonly dir: string) {}

  static async create(): Promise<OpensslTestPki> {
    return new OpensslTestPki(await mkdtemp(path.join(os.tmpdir(), 'fleetproof-mqtt-pki-')));
  }

  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  async rootCa(name: string): Promise<TestCa> {
    const key = await this.newKey(name);
    const config = await this.writeConfig(
      name,
      [
        'basicConstraints = critical, CA:TRUE',
        'keyUsage = critical, keyCertSign, cRLSign',
        'subjectKeyIdentifier = hash',
      ].join('\n'),
    );
    const certPath = path.join(this.dir, `${name}.crt`);
    await openssl([
      'req',
      '-new',
      '-x509',
      '-key',
      key,
      '-subj',
      `/CN=${name}`,
      '-days',
      '1',
      '-config',
      config,
      '-extensions',
      'ext',
      '-set_serial',
      serial(),
      '-out',
      certPath,
    ]);
    const certPem = await readFile(certPath, 'utf8');
    return { dir: this.dir, name, keyPem: await readFile(key, 'utf8'), certPem, chainPem: certPem };
  }

  async issuingCa(name: string, root: TestCa): Promise<TestCa> {
    const issued = await this.issue(name, root, {
      subject: `/CN=${name}`,
      extensions: [
        'basicConstraints = critical, CA:TRUE, pathlen:0',
        'keyUsage = critical, keyCertSign, cRLSign',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
      ],
    });
    return { ...issued, dir: this.dir, name };
  }

  /** TLS server certificate for localhost / 127.0.0.1. */
  serverCert(name: string, issuer: TestCa): Promise<IssuedCert> {
    return this.issue(name, issuer, {
      subject: '/CN=localhost',
      extensions: [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = DNS:localhost, IP:127.0.0.1',
      ],
    });
  }

  /** TLS client certificate with the given CN and optional SAN URIs. */
  clientCert(commonName: string, issuer: TestCa, sanUris: string[] = []): Promise<IssuedCert> {
    return this.issue(`client-${commonName}-${randomBytes(3).toString('hex')}`, issuer, {
      subject: `/CN=${commonName}`,
      extensions: [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = clientAuth',
        ...(sanUris.length > 0 ? [`subjectAltName = ${sanUris.map((uri) => `URI:${uri}`).join(', ')}`] : []),
      ],
    });
  }

  private async issue(
    name: string,
    issuer: TestCa,
    spec: { subject: string; extensions: string[] },
  ): Promise<IssuedCert> {
    const key = await this.newKey(name);
    const csr = path.join(this.dir, `${name}.csr`);
    const certPath = path.join(this.dir, `${name}.crt`);
    const extFile = await this.writeConfig(name, spec.extensions.join('\n'));
    await openssl(['req', '-new', '-key', key, '-subj', spec.subject, '-out', csr]);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      path.join(issuer.dir, `${issuer.name}.crt`),
      '-CAkey',
      path.join(issuer.dir, `${issuer.name}.key`),
      '-set_serial',
      serial(),
      '-days',
      '1',
      '-sha256',
      '-extfile',
      extFile,
      '-extensions',
      'ext',
      '-out',
      certPath,
    ]);
    const certPem = await readFile(certPath, 'utf8');
    const isIssuerRoot = issuer.chainPem === issuer.certPem;
    return {
      keyPem: await readFile(key, 'utf8'),
      certPem,
      chainPem: isIssuerRoot ? certPem : certPem + issuer.certPem,
    };
  }

  private async newKey(name: string): Promise<string> {
    const keyPath = path.join(this.dir, `${name}.key`);
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
    return keyPath;
  }

  private async writeConfig(name: string, extensions: string): Promise<string> {
    const file = path.join(this.dir, `${name}.cnf`);
    await writeFile(file, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\n${extensions}\n`);
    return file;
  }
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0] ?? ''} failed: ${stderr.trim() || String(error)}`);
  }
}

/** Random positive 63-bit serial, as hex. */
function serial(): string {
  const bytes = randomBytes(8);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}
