import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { createLogger } from '../../../src/observability/logger.js';
import { loadOrCreateCertificateAuthority } from '../../../src/pki/index.js';
import { OpensslDevice } from '../../support/attestation-device.js';
import { startTestService, type TestService } from '../../support/service.js';

const hasMosquitto = spawnSync('mosquitto', ['-h']).error === undefined;
const PASSPHRASE = 'test-passphrase-not-secret';

let dir: string;
let broker: ChildProcess | undefined;
let service: TestService;
let device: OpensslDevice | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A real Mosquitto with TLS, required client certificates and per-device pattern ACLs (%u = CN). */
async function startMosquitto(port: number): Promise<ChildProcess> {
  const ca = await loadOrCreateCertificateAuthority({
    dir: path.join(dir, 'pki'),
    passphrase: PASSPHRASE,
    logger: createLogger({ level: 'silent', pretty: false }),
    crlUrl: 'https://127.0.0.1/api/v1/cps/crl',
  });
  const server = await ca.issueServerCertificate({
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  await writeFile(path.join(dir, 'broker.pem'), server.certificatePem + server.chainPem);
  // Mosquitto started as root drops to its own user, which must read its files: a test-only key.
  await chmod(dir, 0o755);
  await writeFile(path.join(dir, 'broker.key'), server.privateKeyPem, { mode: 0o644 });
  await writeFile(path.join(dir, 'ca.pem'), ca.chainPem);
  await writeFile(
    path.join(dir, 'acl'),
    [
      'user fleetproof-service',
      'topic readwrite #',
      '',
      'pattern write cps/attest/response/%u',
      'pattern write cps/attest/response',
      'pattern write cps/enroll/%u',
      'pattern write cps/telemetry/%u',
      'pattern read cps/attest/challenge/%u',
      'pattern read cps/enroll/%u/ott',
      '',
    ].join('\n'),
  );
  await writeFile(
    path.join(dir, 'mosquitto.conf'),
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${path.join(dir, 'ca.pem')}`,
      `certfile ${path.join(dir, 'broker.pem')}`,
      `keyfile ${path.join(dir, 'broker.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
      'tls_version tlsv1.2',
      `acl_file ${path.join(dir, 'acl')}`,
      'persistence false',
      'log_dest stderr',
      '',
    ].join('\n'),
  );
  const child = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net
        .connect(port, '127.0.0.1', () => socket.end(() => resolve(true)))
        .once('error', () => resolve(false));
    });
    if (open) return child;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`mosquitto did not start: ${stderr}`);
}

beforeAll(async () => {
  if (!hasMosquitto) return;
  dir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-mosquitto-'));
  const port = await freePort();
  broker = await startMosquitto(port);
  service = await startTestService({
    dataDir: dir,
    env: { MQTT_URL: `mqtts://127.0.0.1:${port}`, FLEETPROOF_CA_PASSPHRASE: PASSPHRASE },
  });
  // Wait until the service is connected to Mosquitto as fleetproof-service (its ACL user).
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const health = (await (await fetch(`${service.app.urls.http}/api/v1/health`)).json()) as {
      checks: { mqtt: { status: string } };
    };
    if (health.checks.mqtt.status === 'up') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

afterAll(async () => {
  await device?.dispose();
  await service?.close();
  broker?.kill('SIGTERM');
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasMosquitto)(
  'attestation through a real Mosquitto (TLS, require_certificate, per-device ACLs)',
  () => {
    it('delivers the challenge, and the signed answer on the device topic passes', async () => {
      const deviceId = `mosq-${randomBytes(3).toString('hex')}`;
      device = await OpensslDevice.enroll(service, deviceId);
      const first = device.nextChallenge();
      await service.services.lifecycle.approve(service.services.database.orm.em.fork(), deviceId, 'test');
      await service.scheduler.tick();
      const challenge = await first;
      await device.publish(await device.response(challenge));
      let result: AttestationResult | null = null;
      for (let attempt = 0; attempt < 200 && !result; attempt += 1) {
        result = await service.services.database.orm.em
          .fork()
          .findOne(AttestationResult, { challengeId: challenge.challenge_id });
        if (!result) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(result).toMatchObject({ outcome: 'PASS', reasons: [] });
    });
  },
);
