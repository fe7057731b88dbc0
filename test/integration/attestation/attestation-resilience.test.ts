import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import type { ChallengeMessage, ChallengeTransport } from '../../../src/attestation/attestation.service.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { OpensslDevice } from '../../support/attestation-device.js';
import { freshDatabaseUrl } from '../../support/database.js';
import { startTestService, type TestService } from '../../support/service.js';

let databaseUrl: string;
let dataDir: string;
const clock = new ManualClock();

beforeAll(async () => {
  databaseUrl = await freshDatabaseUrl();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-resilience-'));
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** Records what a scheduler sent: the schedule is under test here, not MQTT delivery. */
function recordingTransport(): ChallengeTransport & { sent: ChallengeMessage[] } {
  const sent: ChallengeMessage[] = [];
  return {
    sent,
    publishChallenge: (_deviceId, message) => {
      sent.push(message);
      return Promise.resolve();
    },
  };
}

async function results(service: TestService, challengeId: string): Promise<AttestationResult[]> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const rows = await service.services.database.orm.em.fork().find(AttestationResult, { challengeId });
    if (rows.length > 0) return rows;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return [];
}

describe('attestation across instances and restarts', () => {
  it('shares the schedule between two instances on one database with no device challenged twice', async () => {
    // Their own schedulers stay out of the way (a tick a minute): the claims under test are the
    // explicit ones below, racing each other, not a background pass that gets there first.
    const quiet = { FLEETPROOF_SCHEDULER_TICK_MS: '60000' };
    const a = await startTestService({ mqtt: 'embedded', clock, databaseUrl, dataDir, env: quiet });
    const b = await startTestService({ mqtt: 'embedded', clock, databaseUrl, dataDir, env: quiet });
    try {
      const ids = Array.from(
        { length: 60 },
        (_, index) => `shared-${index}-${randomBytes(2).toString('hex')}`,
      );
      for (const deviceId of ids) {
        await a.services.inventory.register(
          a.services.database.orm.em.fork(),
          { device_id: deviceId, device_type: 'SENSOR' },
          'test',
        );
      }
      // Put them straight on the schedule: enrollment is tested elsewhere, claiming is under test here.
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(
        `update device set enrollment_state = 'APPROVED', attestation_status = 'VERIFIED', next_challenge_at = $1 where device_id = any($2)`,
        [clock.now(), ids],
      );
      await client.end();

      const toA = recordingTransport();
      const toB = recordingTransport();
      await Promise.all([
        a.services.attestation.issueDueChallenges(a.services.database.orm.em.fork(), toA),
        b.services.attestation.issueDueChallenges(b.services.database.orm.em.fork(), toB),
        a.services.attestation.issueDueChallenges(a.services.database.orm.em.fork(), toA),
        b.services.attestation.issueDueChallenges(b.services.database.orm.em.fork(), toB),
      ]);
      const challenged = [...toA.sent, ...toB.sent].map((message) => message.device_id);
      expect(challenged.sort()).toEqual([...ids].sort());
      // Nothing is due again within the interval.
      const again = recordingTransport();
      await a.services.attestation.issueDueChallenges(a.services.database.orm.em.fork(), again);
      expect(again.sent.filter((message) => ids.includes(message.device_id))).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('decides outstanding challenges exactly once after a restart: one answered, one timed out', async () => {
    const first = await startTestService({ mqtt: 'embedded', clock, databaseUrl, dataDir });
    const device = await OpensslDevice.enroll(first, `restart-${randomBytes(3).toString('hex')}`);
    await first.services.lifecycle.approve(first.services.database.orm.em.fork(), device.deviceId, 'test');
    const answered = device.nextChallenge();
    const ignored = device.nextChallenge();
    const em = () => first.services.database.orm.em.fork();
    await first.services.attestation.challengeNow(em(), device.deviceId, first.challengeTransport, 'test');
    await first.services.attestation.challengeNow(em(), device.deviceId, first.challengeTransport, 'test');
    const [toAnswer, toTimeOut] = [await answered, await ignored];
    await device.close();
    await first.close(); // both challenges are outstanding

    const second = await startTestService({ mqtt: 'embedded', clock, databaseUrl, dataDir });
    try {
      await device.connect(second);
      await device.publish(await device.response(toAnswer));
      expect((await results(second, toAnswer.challenge_id)).map((row) => row.outcome)).toEqual(['PASS']);
      clock.advance(11_000);
      await second.scheduler.tick();
      await second.scheduler.tick();
      expect((await results(second, toTimeOut.challenge_id)).map((row) => row.outcome)).toEqual(['TIMEOUT']);
      expect((await results(second, toAnswer.challenge_id)).map((row) => row.outcome)).toEqual(['PASS']);
    } finally {
      await device.dispose();
      await second.close();
    }
  });
});
