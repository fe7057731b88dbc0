import 'reflect-metadata';
import { createVerify, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as x509 from '@peculiar/x509';
import type { ChallengeMessage, ChallengeTransport } from '../src/attestation/attestation.service.js';
import { loadConfig } from '../src/config.js';
import { startService, type Running } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { signAttestationResponse } from '../src/simulator/attestation-signer.js';
import { generateDeviceKeys } from '../src/simulator/provisioning.js';
import {
  benchEnvironment,
  createDatabase,
  everySecond,
  fmt,
  machine,
  opsPerSecond,
  percentile,
  redact,
} from './support.js';

interface BenchDevice {
  deviceId: string;
  keys: Awaited<ReturnType<typeof generateDeviceKeys>>;
  certificatePem: string;
  counter: number;
}

/**
 * The verifier's own cost: challenge stored, response verified (all checks), result, status and
 * events recorded, per attestation, in process and without MQTT (which the end-to-end benchmark of a
 * later session adds). Devices sign with node:crypto exactly as schema/asyncapi.yaml says.
 */
export async function runAttestBenchmark(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: 'string', default: '200' },
      seconds: { type: 'string', default: '30' },
      concurrency: { type: 'string', default: '16' },
      embedded: { type: 'boolean', default: false },
    },
  });
  const deviceCount = Number(values.devices);
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const adminUrl = values.embedded ? undefined : process.env.DATABASE_URL;
  console.log(machine());
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-bench-attest-'));
  const database = adminUrl ? await createDatabase(adminUrl) : undefined;
  console.log(`database: ${database ? `PostgreSQL (${redact(database.url)})` : 'embedded PGlite'}`);

  console.log('\nraw ceiling (one thread, 3 s):');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const message = randomBytes(300);
  const signature = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
  const rawVerify = await opsPerSecond(3, () =>
    createVerify('sha256').update(message).verify({ key: publicKey, dsaEncoding: 'der' }, signature),
  );
  console.log(`  ECDSA P-256 verify: ${fmt(rawVerify, 0)} /s`);

  let running: Running | undefined;
  try {
    running = await startService(
      loadConfig(
        benchEnvironment(dataDir, database?.url, {
          // The scheduler stays out of the way: this benchmark issues the challenges itself.
          FLEETPROOF_SCHEDULER_TICK_MS: '60000',
        }),
      ),
      createLogger({ level: 'warn', pretty: false }),
    );
    const { services } = running;
    const em = () => services.database.orm.em.fork();

    console.log(`\nprovisioning ${deviceCount} devices`);
    const devices: BenchDevice[] = [];
    const stopProgress = everySecond(() => console.log(`  ${devices.length}/${deviceCount}`));
    for (let index = 0; index < deviceCount; index += 1) {
      const deviceId = `attest-bench-${index}`;
      const keys = await generateDeviceKeys();
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${deviceId}`,
        keys: keys.cryptoKeys,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      });
      await services.inventory.register(
        em(),
        {
          device_id: deviceId,
          device_type: 'PLC',
          criticality: 'critical',
          expected_cdi_commitment: `sha256:${randomBytes(32).toString('hex')}`,
          golden_firmware_hash: `sha256:${'aa'.repeat(32)}`,
        },
        'bench',
      );
      const { ott } = await services.otts.issueForOperator(em(), deviceId, 'bench');
      const enrolled = await services.enrollment.enroll(em(), {
        ott,
        csr: csr.toString('base64'),
        channelBinding: undefined,
        clientAddress: '127.0.0.1',
      });
      await services.lifecycle.approve(em(), deviceId, 'bench');
      devices.push({ deviceId, keys, certificatePem: enrolled.certificate.pem, counter: 0 });
    }
    stopProgress();

    const pending = new Map<string, ChallengeMessage>();
    const capture: ChallengeTransport = {
      publishChallenge: (deviceId, challenge) => {
        pending.set(deviceId, challenge);
        return Promise.resolve();
      },
    };
    const latencies: number[] = [];
    let done = 0;
    let failed = 0;
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const deadline = started + seconds * 1000;
    const stop = everySecond(() =>
      console.log(`  ${done} attestations (${fmt(done / ((performance.now() - started) / 1000))}/s)`),
    );
    console.log(`\ntimed: ${seconds} s, concurrency ${concurrency}`);
    let next = 0;
    const worker = async () => {
      while (performance.now() < deadline) {
        const device = devices[next++ % devices.length]!;
        await services.attestation.challengeNow(em(), device.deviceId, capture, 'bench');
        const challenge = pending.get(device.deviceId)!;
        device.counter += 1;
        const response = signAttestationResponse(
          {
            type: 'attestation_response',
            challenge_id: challenge.challenge_id,
            device_id: device.deviceId,
            nonce: challenge.nonce,
            firmware_hash: `sha256:${'aa'.repeat(32)}`,
            timestamp: services.clock.now().toISOString(),
            counter: device.counter,
          },
          device.keys.privateKey,
          device.certificatePem,
        );
        const t0 = performance.now();
        const disposition = await services.attestation.handleResponse(
          em(),
          Buffer.from(JSON.stringify(response)),
          {
            topicDeviceId: device.deviceId,
            receivedAt: services.clock.now(),
          },
        );
        latencies.push(performance.now() - t0);
        if (disposition === 'decided') done += 1;
        else failed += 1;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    stop();
    const elapsed = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const sorted = Float64Array.from(latencies).sort();
    console.log('\nresult (challenge + verify + record, in process, no MQTT):');
    console.log(
      `  attestations/s: ${fmt(done / elapsed)} (${done} in ${fmt(elapsed)} s, ${failed} not decided)`,
    );
    console.log(
      `  response handling: p50 ${fmt(percentile(sorted, 50))} ms, p99 ${fmt(percentile(sorted, 99))} ms`,
    );
    const cpuPerAttestation = (cpu.user + cpu.system) / 1e6 / Math.max(1, done);
    console.log(
      `  CPU per attestation (service + signing devices, one process): ${fmt(cpuPerAttestation * 1000, 2)} ms = ${fmt(cpuPerAttestation * rawVerify)} raw verifies`,
    );
  } finally {
    await running?.stop();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
