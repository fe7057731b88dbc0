import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { createLogger } from '../../../src/observability/logger.js';
import { loadOrCreateCertificateAuthority } from '../../../src/pki/index.js';
import { OpensslDevice } from '../../support/attestation-device.js';
import { freePort, portOpen } from '../../support/processes.js';
import { startTestService, type TestService } from '../../support/service.js';

const hasMosquitto = spawnSync('mosquitto', ['-h']).error === undefined;
const PASSPHRASE = 'test-passphrase-not-secret';

let dir: string;
let broker: ChildProcess | undefined;
let service: TestService;
let device: OpensslDevice | undefined;
let brokerPort = 0;
const clock = new ManualClock();

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
  await portOpen(port, () => `mosquitto did not start: ${stderr}`);
  return child;
}

/** Waits until the service is connected to Mosquitto as fleetproof-service (its ACL user). */
async function serviceConnected(): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt += 1) {
    const health = (await (await fetch(`${service.app.urls.http}/api/v1/health`)).json()) as {
      checks: { mqtt: { status: string } };
    };
    if (health.checks.mqtt.status === 'up') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the service did not connect to Mosquitto');
}

async function resultsOf(challengeId: string): Promise<AttestationResult[]> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const rows = await service.services.database.orm.em.fork().find(AttestationResult, { challengeId });
    if (rows.length > 0) return rows;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return [];
}

beforeAll(async () => {
  if (!hasMosquitto) return;
  dir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-mosquitto-'));
  brokerPort = await freePort();
  broker = await startMosquitto(brokerPort);
  service = await startTestService({
    dataDir: dir,
    clock,
    env: { MQTT_URL: `mqtts://127.0.0.1:${brokerPort}`, FLEETPROOF_CA_PASSPHRASE: PASSPHRASE },
  });
  await serviceConnected();
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
    const em = () => service.services.database.orm.em.fork();

    it('delivers the challenge, and the signed answer on the device topic passes', async () => {
      const deviceId = `mosq-${randomBytes(3).toString('hex')}`;
      device = await OpensslDevice.enroll(service, deviceId);
      const first = device.nextChallenge();
      await service.services.lifecycle.approve(em(), deviceId, 'test');
      await service.scheduler.tick();
      const challenge = await first;
      await device.publish(await device.response(challenge));
      expect((await resultsOf(challenge.challenge_id)).map((row) => row.outcome)).toEqual(['PASS']);
    });

    it('loses nothing and decides nothing twice when the broker restarts mid-run', async () => {
      broker?.kill('SIGTERM');
      await new Promise((resolve) => broker!.once('exit', resolve));
      // Asked while the broker is down: stored, cannot leave, and must end as exactly one TIMEOUT.
      const stranded = await service.services.attestation.challengeNow(
        em(),
        device!.deviceId,
        service.challengeTransport,
        'test',
      );
      broker = await startMosquitto(brokerPort);
      await serviceConnected();
      await device!.close();
      await device!.connect(service);
      const next = device!.nextChallenge();
      await service.services.attestation.challengeNow(
        em(),
        device!.deviceId,
        service.challengeTransport,
        'test',
      );
      const challenge = await next;
      await device!.publish(await device!.response(challenge));
      expect((await resultsOf(challenge.challenge_id)).map((row) => row.outcome)).toEqual(['PASS']);
      clock.advance(11_000);
      await service.scheduler.tick();
      expect((await resultsOf(stranded)).map((row) => row.outcome)).toEqual(['TIMEOUT']);
      await service.scheduler.tick();
      expect((await resultsOf(challenge.challenge_id)).map((row) => row.outcome)).toEqual(['PASS']);
    });
  },
);
