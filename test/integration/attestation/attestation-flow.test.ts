import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { verifyAuditChain } from '../../../src/audit/audit.service.js';
import { writeDecisions } from '../../../src/attestation/attestation.store.js';
import { AttestationChallenge } from '../../../src/attestation/challenge.entity.js';
import { Case, type CaseSource } from '../../../src/cases/case.entity.js';
import { Device } from '../../../src/devices/device.entity.js';
import { RiskFactor } from '../../../src/risk/risk-factor.entity.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { OpensslDevice, type Challenge } from '../../support/attestation-device.js';
import { openssl } from '../../support/openssl.js';
import { startTestService, type TestService } from '../../support/service.js';
import { until } from '../../support/until.js';

let service: TestService;
const clock = new ManualClock();
const devices: OpensslDevice[] = [];

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', clock });
});

afterAll(async () => {
  for (const device of devices) await device.dispose();
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();

async function approvedDevice(prefix: string): Promise<{ device: OpensslDevice; first: Challenge }> {
  const device = await OpensslDevice.enroll(service, `${prefix}-${randomBytes(3).toString('hex')}`);
  devices.push(device);
  const first = device.nextChallenge();
  await service.services.lifecycle.approve(em(), device.deviceId, 'test');
  // Approval schedules the first challenge at once; the scheduler's next pass sends it.
  await service.scheduler.tick();
  return { device, first: await first };
}

async function challenge(device: OpensslDevice): Promise<Challenge> {
  const next = device.nextChallenge();
  await service.services.attestation.challengeNow(em(), device.deviceId, service.challengeTransport, 'test');
  return next;
}

/** Waits until the service has decided `challengeId` `count` times, and returns the results. */
async function results(challengeId: string, count = 1): Promise<AttestationResult[]> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const rows = await em().find(AttestationResult, { challengeId }, { orderBy: { seq: 'asc' } });
    if (rows.length >= count) return rows;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`challenge ${challengeId} was not decided ${count} time(s)`);
}

const deviceRow = (deviceId: string) => em().findOneOrFail(Device, { deviceId });
const openCases = async (deviceId: string, source: CaseSource) =>
  em().count(Case, { deviceRef: (await deviceRow(deviceId)).id, source, status: 'OPEN' });

describe('attestation over MQTT', () => {
  it('passes a response signed by openssl dgst over the canonical bytes, and the device is VERIFIED', async () => {
    const { device, first } = await approvedDevice('honest');
    await device.publish(await device.response(first));
    const [result] = await results(first.challenge_id);
    expect(result).toMatchObject({
      outcome: 'PASS',
      reasons: [],
      nonceMatch: true,
      certChainValid: true,
      signatureValid: true,
    });
    expect(first.nonce).toMatch(/^[0-9a-f]{64}$/);
    expect((await deviceRow(device.deviceId)).attestationStatus).toBe('VERIFIED');
  });

  it.each([
    ['FIRMWARE_MISMATCH', { firmware_hash: `sha256:${'00'.repeat(32)}` }],
    ['NONCE_MISMATCH', { nonce: 'ab'.repeat(32) }],
    ['STALE_TIMESTAMP', { timestamp: '2020-01-01T00:00:00.000Z' }],
  ])('fails with %s, opens a case and keeps the device FAILED', async (reason, overrides) => {
    const { device, first } = await approvedDevice(reason.toLowerCase().replaceAll('_', '-'));
    await device.publish(await device.response(first, overrides));
    const [result] = await results(first.challenge_id);
    expect(result?.outcome).toBe('FAIL');
    expect(result?.reasons).toEqual([reason]);
    expect((await deviceRow(device.deviceId)).attestationStatus).toBe('FAILED');
    expect(await openCases(device.deviceId, 'ATTESTATION_FAILURE')).toBe(1);
    // A later PASS does not clear a failed check: an operator must acknowledge it.
    const next = await challenge(device);
    await device.publish(await device.response(next));
    expect((await results(next.challenge_id))[0]?.outcome).toBe('PASS');
    expect((await deviceRow(device.deviceId)).attestationStatus).toBe('FAILED');
  });

  it('fails WRONG_DEVICE, CERT_NOT_CURRENT and CHAIN_INVALID when the response names or carries the wrong identity', async () => {
    const { device, first } = await approvedDevice('identity');
    await device.publish(await device.response(first, { device_id: 'someone-else' }));
    expect((await results(first.challenge_id))[0]?.reasons).toEqual(['WRONG_DEVICE']);

    // Renew the certificate with the same key: the old one is superseded and no longer proves anything.
    const previousPem = device.certificatePem;
    const csr = await openssl(['req', '-new', '-key', device.keyFile, '-subj', `/CN=${device.deviceId}`]);
    const renewed = await service.services.enrollment.reenroll(em(), {
      clientCertificate: Buffer.from(previousPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'),
      csr: csr.stdout,
      channelBinding: undefined,
      clientAddress: '127.0.0.1',
    });
    const stale = await challenge(device);
    const withOldCertificate = { ...(await device.response(stale)), cert_chain: [previousPem] };
    await device.publish(withOldCertificate);
    expect((await results(stale.challenge_id))[0]?.reasons).toEqual(['CERT_NOT_CURRENT']);

    const selfSigned = path.join(device.dir, 'self.pem');
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      device.keyFile,
      '-subj',
      `/CN=${device.deviceId}`,
      '-days',
      '1',
      '-out',
      selfSigned,
    ]);
    device.certificatePem = renewed.certificate.pem;
    const forged = await challenge(device);
    const withSelfSigned = {
      ...(await device.response(forged)),
      cert_chain: [await readFile(selfSigned, 'utf8')],
    };
    await device.publish(withSelfSigned);
    expect((await results(forged.challenge_id))[0]?.reasons).toEqual(['CHAIN_INVALID', 'CERT_NOT_CURRENT']);
  });

  it('fails a response signed by another key with SIGNATURE_INVALID', async () => {
    const { device, first } = await approvedDevice('wrong-key');
    const otherKey = path.join(device.dir, 'other.key');
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey]);
    await device.publish(await device.response(first, {}, otherKey));
    const [result] = await results(first.challenge_id);
    expect(result).toMatchObject({ outcome: 'FAIL', reasons: ['SIGNATURE_INVALID'], signatureValid: false });
  });

  it('ignores a byte-identical redelivery, fails a different second answer, and refuses a counter rollback', async () => {
    const { device, first } = await approvedDevice('replay');
    const response = await device.response(first);
    await device.publish(response);
    await results(first.challenge_id);
    // prom-client hands out its live value objects: copy the number now.
    const duplicatesBefore =
      (await service.services.metrics.attestationDuplicates.get()).values[0]?.value ?? 0;
    await device.publish(response); // QoS 1 redelivery: same bytes
    await device.publish(await device.response(first)); // a different answer to a decided challenge
    const decided = await results(first.challenge_id, 2);
    expect(decided.map((row) => row.outcome)).toEqual(['PASS', 'FAIL']);
    expect(decided[1]?.reasons).toEqual(['REPLAYED_RESPONSE']);
    // Messages are handled concurrently: wait for the duplicate's turn before counting.
    const duplicates = async () =>
      (await service.services.metrics.attestationDuplicates.get()).values[0]?.value ?? 0;
    for (let attempt = 0; attempt < 100 && (await duplicates()) === duplicatesBefore; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await duplicates()).toBe(duplicatesBefore + 1);

    const { device: other, first: otherFirst } = await approvedDevice('rollback');
    await other.publish(await other.response(otherFirst, { counter: 10 }));
    await results(otherFirst.challenge_id);
    const next = await challenge(other);
    await other.publish(await other.response(next, { counter: 9 }));
    expect((await results(next.challenge_id))[0]?.reasons).toEqual(['COUNTER_REPLAY']);
  });

  it('never lets an unattributable response change a device: bad signature on the bare topic, unknown challenge', async () => {
    const { device, first } = await approvedDevice('bare');
    const otherKey = path.join(device.dir, 'forger.key');
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey]);
    const forged = await device.response(first, { firmware_hash: `sha256:${'66'.repeat(32)}` }, otherKey);
    await device.publish(forged, 'cps/attest/response');
    await device.publish(
      await device.response({ ...first, challenge_id: '00000000-0000-4000-8000-000000000000' }),
    );
    // The genuine answer on the bare topic still decides the challenge: its signature attributes it.
    await device.publish(await device.response(first), 'cps/attest/response');
    const decided = await results(first.challenge_id);
    expect(decided.map((row) => row.outcome)).toEqual(['PASS']);
    const events = await em().find(AuditEvent, {
      subject: `device:${device.deviceId}`,
      action: { $like: 'attestation.security-event.%' },
    });
    expect(events.map((event) => event.action).sort()).toEqual([
      'attestation.security-event.unattributable',
      'attestation.security-event.unknown-challenge',
    ]);
  });

  it('counts malformed payloads without crashing the consumer', async () => {
    const { device, first } = await approvedDevice('malformed');
    await device.publish('{ not json');
    await device.publish('x'.repeat(40 * 1024));
    await device.publish(await device.response(first));
    expect((await results(first.challenge_id))[0]?.outcome).toBe('PASS');
  });
});

describe('group commit', () => {
  it('decides a burst of answers in groups: each challenge once, each failure with its case and audit event, the chain intact', async () => {
    const burst = await Promise.all(Array.from({ length: 8 }, (_, index) => approvedDevice(`burst${index}`)));
    const tampered = new Set([1, 4, 6]);
    const responses = await Promise.all(
      burst.map(({ device, first }, index) =>
        device.response(first, tampered.has(index) ? { firmware_hash: `sha256:${'0b'.repeat(32)}` } : {}),
      ),
    );
    // All at once, and the first device's answer twice (a QoS 1 redelivery inside the same group).
    await Promise.all([
      ...burst.map(({ device }, index) => device.publish(responses[index]!)),
      burst[0]!.device.publish(responses[0]!),
    ]);
    for (const [index, { device, first }] of burst.entries()) {
      const decided = await results(first.challenge_id);
      expect(decided.map((row) => row.outcome)).toEqual([tampered.has(index) ? 'FAIL' : 'PASS']);
      expect((await deviceRow(device.deviceId)).attestationStatus).toBe(
        tampered.has(index) ? 'FAILED' : 'VERIFIED',
      );
      expect(await openCases(device.deviceId, 'ATTESTATION_FAILURE')).toBe(tampered.has(index) ? 1 : 0);
      expect(
        await em().count(AuditEvent, { subject: `device:${device.deviceId}`, action: 'attestation.failed' }),
      ).toBe(tampered.has(index) ? 1 : 0);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await em().count(AttestationResult, { challengeId: burst[0]!.first.challenge_id })).toBe(1);
    expect(await verifyAuditChain(em())).toMatchObject({ ok: true });
  });

  it('rolls back a whole group write made on a stale device version (the guard), and the challenge can still be decided', async () => {
    const { device, first } = await approvedDevice('guard');
    const row = await deviceRow(device.deviceId);
    const at = new Date();
    const stale = writeDecisions(
      { em: em(), emit: () => {} },
      {
        claims: [{ id: first.challenge_id, state: 'ANSWERED', responseHash: 'ab'.repeat(32), decidedAt: at }],
        devices: [
          {
            id: row.id,
            version: row.version - 1,
            attestationStatus: 'VERIFIED',
            failureKind: null,
            consecutiveFailures: 0,
            lastCounter: null,
            lastAttestationAt: at,
            updatedAt: at,
            firmwareUpdate: null,
          },
        ],
        results: [],
      },
    );
    await expect(stale).rejects.toMatchObject({ code: '40001' });
    expect(await em().findOneOrFail(AttestationChallenge, { id: first.challenge_id })).toMatchObject({
      state: 'OPEN',
      responseHash: null,
    });
    await device.publish(await device.response(first));
    expect((await results(first.challenge_id))[0]?.outcome).toBe('PASS');
  });
});

describe('golden firmware from the policy bundle', () => {
  const OLD = `sha256:${'a1'.repeat(32)}`;
  const NEWER = `sha256:${'a2'.repeat(32)}`;
  const UNVETTED = `sha256:${'a3'.repeat(32)}`;

  it('passes a newer approved firmware and the own golden hash, fails an unlisted one with FIRMWARE_MISMATCH', async () => {
    await service.services.policies.publish(
      em(),
      'PLC',
      {
        defaultCriticality: 'critical',
        firmware: {
          'ATT-1': {
            versions: [
              { version: '1.0', hash: OLD },
              { version: '1.1', hash: NEWER },
            ],
            latest: '1.1',
          },
        },
        risk: {
          weights: { FIRMWARE_DRIFT: 1, TELEMETRY_ANOMALY: 1, IOC_HIT: 1, ATTESTATION: 1 },
          severityPoints: { LOW: 5, MEDIUM: 15, HIGH: 35, CRITICAL: 60 },
          halfLifeHours: 24,
        },
        telemetry: { rules: [], maxMessagesPerMinute: 600 },
        maxAgeDays: 90,
      },
      'test',
    );
    const enrollOn = async (hash: string) => {
      const device = await OpensslDevice.enroll(service, `fw-${randomBytes(3).toString('hex')}`, {
        model: 'ATT-1',
        version: '1.0',
        hash,
      });
      devices.push(device);
      const first = device.nextChallenge();
      await service.services.lifecycle.approve(em(), device.deviceId, 'test');
      await service.scheduler.tick();
      return { device, first: await first };
    };

    // Updated in the field to the bundle's latest approved image: still authorised firmware.
    const { device: updated, first } = await enrollOn(OLD);
    const ref = (await deviceRow(updated.deviceId)).id;
    const openDrift = () =>
      em().count(RiskFactor, { deviceRef: ref, kind: 'FIRMWARE_DRIFT', clearedAt: null });
    await service.services.risk.rescoreDue(em(), 100);
    expect(await openDrift()).toBe(1); // 1.0 is one version behind 1.1
    await updated.publish(await updated.response(first, { firmware_hash: NEWER }));
    expect((await results(first.challenge_id))[0]).toMatchObject({ outcome: 'PASS', firmwareHash: NEWER });
    // It runs that image from now on: recorded with its version and audited in the same write, and
    // the drift factor of the image it left is cleared.
    expect(await deviceRow(updated.deviceId)).toMatchObject({ firmwareHash: NEWER, firmwareVersion: '1.1' });
    const audited = await em().find(AuditEvent, {
      action: 'device.firmware-updated',
      subject: `device:${updated.deviceId}`,
    });
    expect(audited.map((event) => event.details)).toEqual([
      { challengeId: first.challenge_id, from: OLD, to: NEWER, version: '1.1' },
    ]);
    await until(openDrift, (open) => open === 0);

    const next = await challenge(updated);
    await updated.publish(await updated.response(next, { firmware_hash: UNVETTED }));
    expect((await results(next.challenge_id))[0]).toMatchObject({
      outcome: 'FAIL',
      reasons: ['FIRMWARE_MISMATCH'],
    });

    // Enrolled on a hash the bundle does not list: it passes on its own golden value (the drift
    // factor scores it as unvetted), and another unlisted hash still fails.
    const { device: unvetted, first: own } = await enrollOn(UNVETTED);
    await unvetted.publish(await unvetted.response(own, { firmware_hash: UNVETTED }));
    expect((await results(own.challenge_id))[0]?.outcome).toBe('PASS');
    const other = await challenge(unvetted);
    await unvetted.publish(await unvetted.response(other, { firmware_hash: `sha256:${'a4'.repeat(32)}` }));
    expect((await results(other.challenge_id))[0]?.reasons).toEqual(['FIRMWARE_MISMATCH']);

    // Once it runs an approved image, the unlisted one it enrolled with is no longer accepted.
    const { device: moved, first: toApproved } = await enrollOn(UNVETTED);
    await moved.publish(await moved.response(toApproved, { firmware_hash: OLD }));
    expect((await results(toApproved.challenge_id))[0]?.outcome).toBe('PASS');
    expect(await deviceRow(moved.deviceId)).toMatchObject({ firmwareHash: OLD, firmwareVersion: '1.0' });
    const back = await challenge(moved);
    await moved.publish(await moved.response(back, { firmware_hash: UNVETTED }));
    expect((await results(back.challenge_id))[0]?.reasons).toEqual(['FIRMWARE_MISMATCH']);
  });
});

describe('timeouts (injected clock)', () => {
  it('three timeouts in a row make the device FAILED/UNRESPONSIVE with one case; a PASS heals it', async () => {
    const { device, first } = await approvedDevice('silent');
    const challenges = [first, await challenge(device), await challenge(device)];
    clock.advance(11_000);
    await service.services.attestation.expireOverdue(em());
    for (const item of challenges) expect((await results(item.challenge_id))[0]?.outcome).toBe('TIMEOUT');
    const failed = await deviceRow(device.deviceId);
    expect(failed).toMatchObject({
      attestationStatus: 'FAILED',
      failureKind: 'UNRESPONSIVE',
      consecutiveFailures: 3,
    });
    expect(await openCases(device.deviceId, 'UNRESPONSIVE')).toBe(1);

    // A late answer is recorded but changes nothing.
    await device.publish(await device.response(first));
    const next = await challenge(device);
    await device.publish(await device.response(next));
    expect((await results(next.challenge_id))[0]?.outcome).toBe('PASS');
    expect(await deviceRow(device.deviceId)).toMatchObject({
      attestationStatus: 'VERIFIED',
      consecutiveFailures: 0,
    });
    expect((await results(first.challenge_id)).map((row) => row.outcome)).toEqual(['TIMEOUT']);
  });
});
