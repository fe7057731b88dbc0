import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openssl } from '../../support/openssl.js';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded', env: { FLEETPROOF_OTT_RATE_PER_DEVICE: '3' } });
});

afterAll(async () => {
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();
const commitment = `sha256:${'c0'.repeat(32)}`;
const requestBody = (deviceId: string) => ({
  device_id: deviceId,
  cdi_commitment: commitment,
  device_type: 'GATEWAY',
  firmware_version: '3.0',
});

async function csrFor(deviceId: string): Promise<string> {
  const made = await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    '/dev/null',
    '-subj',
    `/CN=${deviceId}`,
  ]);
  return made.stdout;
}

async function enrollOnce(deviceId: string) {
  const { ott } = await service.services.otts.request(em(), requestBody(deviceId), {
    address: '127.0.0.1',
    channel: 'rest',
  });
  return service.services.enrollment.enroll(em(), {
    ott,
    csr: await csrFor(deviceId),
    channelBinding: undefined,
    clientAddress: '127.0.0.1',
  });
}

describe('revocation and re-enrollment', () => {
  it('lets a revoked device enroll again only after facilities re-register it, then PENDING -> VERIFIED', async () => {
    const deviceId = `gw-${randomBytes(3).toString('hex')}`;
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'GATEWAY' }, 'test');
    await enrollOnce(deviceId);
    await service.services.lifecycle.approve(em(), deviceId, 'test');
    await service.services.lifecycle.revoke(
      em(),
      deviceId,
      'tamper switch tripped',
      'KEY_COMPROMISE',
      'test',
    );

    await expect(
      service.services.otts.request(em(), requestBody(deviceId), { address: '127.0.0.1', channel: 'rest' }),
    ).rejects.toMatchObject({ reason: 'device-revoked' });

    const { outcome } = await service.services.inventory.register(
      em(),
      { device_id: deviceId, device_type: 'GATEWAY' },
      'facilities',
    );
    expect(outcome).toBe('re-registered');
    const again = await enrollOnce(deviceId);
    expect(again.device).toMatchObject({ enrollmentState: 'ENROLLED', attestationStatus: 'PENDING' });
    const approved = await service.services.lifecycle.approve(em(), deviceId, 'test');
    expect(approved.attestationStatus).toBe('VERIFIED');
  });

  it('rate-limits token requests per device with 429 and Retry-After', async () => {
    const deviceId = `rl-${randomBytes(3).toString('hex')}`;
    await service.services.inventory.register(em(), { device_id: deviceId, device_type: 'GATEWAY' }, 'test');
    const ask = () =>
      fetch(`${service.app.urls.http}/api/v1/cps/ott/request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(requestBody(deviceId)),
      });
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 4; attempt += 1) statuses.push((await ask()).status);
    expect(statuses).toEqual([201, 201, 201, 429]);
    const limited = await ask();
    expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await limited.json()) as { type: string }).type).toBe('urn:fleetproof:problem:rate-limited');
  });
});
