import 'reflect-metadata';
import { fork } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as x509 from '@peculiar/x509';
import { loadConfig } from '../src/config.js';
import { startService, type Running } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';
import { generateDeviceKeys } from '../src/simulator/provisioning.js';
import type { BenchDeviceSpec, FromDevices, ToDevices } from './attest-devices.js';
import {
  benchEnvironment,
  createDatabase,
  everySecond,
  fmt,
  machine,
  opsPerSecond,
  percentile,
  postgresCpuSeconds,
  redact,
} from './support.js';

const FIRMWARE_HASH = `sha256:${'aa'.repeat(32)}`;
/** How often the driver hands due devices to the scheduler's claim. */
const DRIVE_MS = 10;

const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * End to end through a real broker: the service (real PostgreSQL, its MQTT client on the broker)
 * challenges devices that live in a separate process and answer over MQTT; a result counts when its
 * `attestation.decided` event is published (after commit), as a subscriber would see it.
 *
 * The schedule is the durable one: the driver makes devices due (the benchmark's "short interval":
 * each device is due again as soon as its previous result is out, or at `--rate` per second across
 * the fleet) and the service claims them with its own set-based issuance, exactly as the scheduler
 * does. Reported: verified attestations per second over the window after warm-up, the service
 * process's CPU seconds per verification, publish-to-event latency (device publish to event, one
 * clock: both processes run here), and the raw ECDSA P-256 verify rate of this machine as the ceiling.
 */
export async function runAttestBenchmark(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: 'string', default: '2000' },
      seconds: { type: 'string', default: '60' },
      warmup: { type: 'string', default: '5' },
      rate: { type: 'string', default: '0' },
      broker: { type: 'string', default: process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883' },
      connections: { type: 'string', default: '8' },
      embedded: { type: 'boolean', default: false },
    },
  });
  const deviceCount = Number(values.devices);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const rate = Number(values.rate);
  const adminUrl = values.embedded ? undefined : process.env.DATABASE_URL;
  console.log(machine());
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-bench-attest-'));
  const database = adminUrl ? await createDatabase(adminUrl) : undefined;
  console.log(`database: ${database ? `PostgreSQL (${redact(database.url)})` : 'embedded PGlite'}`);
  console.log(`broker: ${values.broker}`);

  console.log('\nraw ceiling (one thread, 3 s):');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const message = randomBytes(300);
  const signature = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
  const rawVerify = await opsPerSecond(3, () =>
    verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, signature),
  );
  console.log(`  ECDSA P-256 verify: ${fmt(rawVerify, 0)} /s (${fmt(1e6 / rawVerify)} µs each)`);

  let running: Running | undefined;
  const devicesProcess = fork(new URL('./attest-devices.ts', import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const fromDevices = (type: FromDevices['type']) =>
    new Promise<FromDevices>((resolve) => {
      const listener = (reply: FromDevices) => {
        if (reply.type !== type) return;
        devicesProcess.off('message', listener);
        resolve(reply);
      };
      devicesProcess.on('message', listener);
    });
  const toDevices = (command: ToDevices) => devicesProcess.send(command);
  try {
    running = await startService(
      loadConfig(
        benchEnvironment(dataDir, database?.url, {
          MQTT_URL: values.broker,
          // The driver below runs the claims; the full scheduler pass (timeouts too) runs once a second.
          FLEETPROOF_SCHEDULER_TICK_MS: '60000',
        }),
      ),
      createLogger({ level: 'warn', pretty: false }),
    );
    const { services } = running;
    const scheduler = running.scheduler;
    const em = () => services.database.orm.em.fork();

    console.log(`\nprovisioning ${deviceCount} devices (EST enrollment in process, 16 at a time)`);
    const specs: BenchDeviceSpec[] = [];
    const stopProgress = everySecond(() => console.log(`  ${specs.length}/${deviceCount}`));
    let next = 0;
    const provision = async () => {
      for (let index = next++; index < deviceCount; index = next++) {
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
            golden_firmware_hash: FIRMWARE_HASH,
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
        specs.push({
          deviceId,
          privateKeyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
          certificatePem: enrolled.certificate.pem,
          firmwareHash: FIRMWARE_HASH,
        });
      }
    };
    await Promise.all(Array.from({ length: 16 }, provision));
    stopProgress();
    const connection = services.database.orm.em.getConnection();
    // From here the driver decides when each device is due.
    await connection.execute(`update device set next_challenge_at = now() + interval '1 day'`);

    toDevices({
      type: 'start',
      broker: values.broker,
      connections: Number(values.connections),
      devices: specs,
    });
    await fromDevices('ready');
    console.log(`devices connected (${values.connections} connections in process ${devicesProcess.pid})`);

    const started = epochMs();
    const window = { from: started + warmup * 1000, to: started + (warmup + seconds) * 1000 };
    const idle: string[] = specs.map((spec) => spec.deviceId);
    const decidedAt = new Map<string, number>();
    const outcomes = new Map<string, number>();
    let passesInWindow = 0;
    let decidedInWindow = 0;
    void (async () => {
      for await (const event of services.pubsub.subscribe('attestation.decided')) {
        const at = epochMs();
        decidedAt.set(event.challengeId, at);
        outcomes.set(event.outcome, (outcomes.get(event.outcome) ?? 0) + 1);
        if (at >= window.from && at <= window.to) {
          decidedInWindow += 1;
          if (event.outcome === 'PASS') passesInWindow += 1;
        }
        idle.push(event.deviceId);
      }
    })();

    console.log(
      `\ntimed: ${warmup} s warm-up + ${seconds} s measured, ${rate > 0 ? `${rate} challenges/s` : 'each device due again as soon as decided'}`,
    );
    const stopReport = everySecond(() => {
      const elapsed = (epochMs() - started) / 1000;
      console.log(
        `  ${fmt(elapsed, 0)} s: ${outcomes.get('PASS') ?? 0} PASS, ${outcomes.get('FAIL') ?? 0} FAIL, ${outcomes.get('TIMEOUT') ?? 0} TIMEOUT (${fmt((outcomes.get('PASS') ?? 0) / elapsed)}/s overall)`,
      );
    });
    let marked = false;
    let cpuBefore = process.cpuUsage();
    let postgresBefore: number | undefined;
    let credit = 0;
    let lastDrive = epochMs();
    let lastFullPass = epochMs();
    while (epochMs() < window.to) {
      const now = epochMs();
      if (!marked && now >= window.from) {
        marked = true;
        cpuBefore = process.cpuUsage();
        postgresBefore = database
          ? await postgresCpuSeconds(new URL(database.url).pathname.slice(1))
          : undefined;
        toDevices({ type: 'mark' });
      }
      credit = rate > 0 ? Math.min(credit + (rate * (now - lastDrive)) / 1000, rate) : idle.length;
      lastDrive = now;
      const due = idle.splice(0, Math.min(Math.floor(credit), idle.length));
      credit -= due.length;
      if (due.length > 0) {
        await connection.execute(
          // Rows locked in id order, as the decisions lock them, so the two never deadlock.
          `update device set next_challenge_at = now() where id in (
             select id from device where device_id = any(string_to_array(?, ',')) order by id for update)`,
          [due.join(',')],
        );
        await services.attestation.issueDueChallenges(em(), running.challengeTransport);
      }
      if (now - lastFullPass >= 1000) {
        lastFullPass = now;
        await scheduler.tick();
      }
      await sleep(Math.max(0, DRIVE_MS - (epochMs() - now)));
    }
    const cpu = process.cpuUsage(cpuBefore);
    const postgresAfter = database
      ? await postgresCpuSeconds(new URL(database.url).pathname.slice(1))
      : undefined;
    stopReport();
    // Answers already on their way are still measured for latency.
    await sleep(2_000);
    toDevices({ type: 'report' });
    const report = (await fromDevices('report')) as Extract<FromDevices, { type: 'report' }>;

    const latencies: number[] = [];
    for (const [challengeId, publishedAt] of report.published) {
      const decided = decidedAt.get(challengeId);
      if (decided !== undefined && publishedAt >= window.from && publishedAt <= window.to)
        latencies.push(decided - publishedAt);
    }
    const sorted = Float64Array.from(latencies).sort();
    const serviceCpu = (cpu.user + cpu.system) / 1e6;
    const perVerification = serviceCpu / Math.max(1, decidedInWindow);
    console.log(`\nresult (${seconds} s window, ${deviceCount} devices, broker ${values.broker}):`);
    console.log(
      `  verified attestations/s (PASS events): ${fmt(passesInWindow / seconds)} (${passesInWindow} in ${seconds} s; all outcomes ${decidedInWindow}; totals ${JSON.stringify(Object.fromEntries(outcomes))})`,
    );
    console.log(
      `  publish -> event latency: p50 ${fmt(percentile(sorted, 50))} ms, p99 ${fmt(percentile(sorted, 99))} ms, max ${fmt(sorted[sorted.length - 1] ?? Number.NaN)} ms (${sorted.length} answers)`,
    );
    console.log(
      `  service process CPU: ${fmt(serviceCpu, 2)} s = ${fmt(perVerification * 1e6, 0)} µs per verification = ${fmt(perVerification * rawVerify, 2)} raw verifies`,
    );
    console.log(
      `  devices process CPU: ${fmt(report.cpuSeconds, 2)} s; PostgreSQL (backends of the bench database): ${postgresBefore !== undefined && postgresAfter !== undefined ? `${fmt(postgresAfter - postgresBefore, 2)} s = ${fmt(((postgresAfter - postgresBefore) / Math.max(1, decidedInWindow)) * 1e6, 0)} µs per verification` : 'n/a'}`,
    );
    if (report.errors > 0) console.log(`  device-side errors: ${report.errors}`);
  } finally {
    toDevices({ type: 'stop' });
    await running?.stop();
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
