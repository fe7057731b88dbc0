import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, runCli, spawnCli } from '../../support/cli.js';
import { openssl } from '../../support/openssl.js';
import { freePort } from '../../support/processes.js';

let dataDir: string;

/** Starts `fleetproof serve` with no configuration but ports and data dir; waits for a healthy service. */
async function startCli() {
  const ports = { http: await freePort(), https: await freePort(), mqtt: await freePort() };
  const child = spawnCli(['serve'], {
    FLEETPROOF_DATA_DIR: dataDir,
    HTTP_PORT: String(ports.http),
    HTTPS_PORT: String(ports.https),
    MQTT_PORT: String(ports.mqtt),
    LOG_LEVEL: 'info',
  });
  const output = collect(child);
  const deadline = Date.now() + 90_000;
  let health: { status: string; checks: Record<string, { status: string }> } | undefined;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const response = await fetch(`http://127.0.0.1:${ports.http}/api/v1/health`);
      if (response.status === 200) {
        health = (await response.json()) as typeof health;
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { child, output, ports, health };
}

async function rootFingerprint(): Promise<string> {
  const pem = await readFile(path.join(dataDir, 'pki', 'root-ca.pem'), 'utf8');
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-start-'));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('starting with no configuration', () => {
  it('creates the CA once, serves TLS that OpenSSL accepts, stops cleanly, and reuses the CA', async () => {
    const first = await startCli();
    try {
      expect(first.health?.status).toBe('ok');
      expect(Object.keys(first.health!.checks).sort()).toEqual(['ca', 'database', 'mqtt', 'policy']);
      const fingerprint = await rootFingerprint();
      const passphraseFile = await stat(path.join(dataDir, 'pki', 'ca-passphrase'));
      expect(passphraseFile.mode & 0o777).toBe(0o600);

      // OpenSSL, as an independent client, accepts the server certificate against root-ca.pem.
      const rootPem = path.join(dataDir, 'pki', 'root-ca.pem');
      const { stdout: chain } = await openssl([
        's_client',
        '-connect',
        `127.0.0.1:${first.ports.https}`,
        '-CAfile',
        rootPem,
        '-verify_return_error',
        '-verify_ip',
        '127.0.0.1',
        '-showcerts',
      ]);
      expect(chain).toContain('Verify return code: 0 (ok)');
      const certs = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
      expect(certs.length).toBeGreaterThanOrEqual(2);
      const leafFile = path.join(dataDir, 'leaf.pem');
      const untrustedFile = path.join(dataDir, 'untrusted.pem');
      await writeFile(leafFile, `${certs[0]}\n`);
      await writeFile(untrustedFile, `${certs.slice(1).join('\n')}\n`);
      const verified = await openssl(['verify', '-CAfile', rootPem, '-untrusted', untrustedFile, leafFile]);
      expect(verified.stdout).toContain(': OK');

      first.child.kill('SIGTERM');
      const result = await first.output;
      expect(result.code, result.stderr).toBe(0);

      const second = await startCli();
      expect(second.health?.status).toBe('ok');
      expect(await rootFingerprint()).toBe(fingerprint);
      second.child.kill('SIGTERM');
      expect((await second.output).code).toBe(0);
    } finally {
      first.child.kill('SIGKILL');
    }
  });
});

describe('configuration', () => {
  it('stops start-up with a message naming a malformed DATABASE_URL', async () => {
    const result = await runCli(['serve'], { DATABASE_URL: 'not a url', FLEETPROOF_DATA_DIR: dataDir });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('DATABASE_URL');
  });

  it('names a port that is not a number', async () => {
    const result = await runCli(['migrate'], { HTTP_PORT: 'eighty', FLEETPROOF_DATA_DIR: dataDir });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('HTTP_PORT');
  });
});
