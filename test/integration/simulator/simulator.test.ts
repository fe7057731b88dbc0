import { PassThrough } from 'node:stream';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationResult } from '../../../src/attestation/attestation-result.entity.js';
import { runSimulation } from '../../../src/simulator/simulate.command.js';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
});

afterAll(async () => {
  await service?.close();
});

describe('fleetproof simulate', () => {
  it('provisions devices like real ones and gets their honest and tampered answers judged', async () => {
    const out = new PassThrough();
    let printed = '';
    out.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const code = await runSimulation(
      {
        devices: 4,
        behaviour: 'honest:50,tampered-firmware:50',
        api: service.app.urls.https,
        http: service.app.urls.http,
        broker: service.app.urls.mqtt,
        ca: path.join(service.dataDir, 'pki', 'root-ca.pem'),
        facilitiesToken: await service.token('facilities'),
        operatorToken: await service.token('operator'),
        approve: true,
        prefix: 'simtest',
        type: 'RTU',
        concurrency: 2,
        duration: 4,
        slowMs: 15_000,
      },
      out,
    );
    expect(code, printed).toBe(0);
    expect(printed).toContain('devices enrolled:   4/4');
    const results = await service.services.database.orm.em
      .fork()
      .find(AttestationResult, { deviceId: { $like: 'simtest-%' } });
    expect(results.filter((result) => result.outcome === 'PASS')).toHaveLength(2);
    expect(results.filter((result) => result.reasons.includes('FIRMWARE_MISMATCH'))).toHaveLength(2);
  });
});
