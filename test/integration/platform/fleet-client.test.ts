import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiToken } from '../../../src/auth/api-token.entity.js';
import {
  AuditEventsLiveDocument,
  CreateApiTokenDocument,
  RegisterDeviceDocument,
  createFleetClient,
  type AuditEventsLiveSubscription,
} from '../../../src/client/index.js';
import type { AttestationDecidedEvent } from '../../../src/shared/events.js';
import { startTestService, type TestService } from '../../support/service.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

let service: TestService;
let work: string;
/** Kept across the restart test, which starts a second instance on it. */
let dataDir: string;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  dataDir = service.dataDir;
  work = await mkdtemp(path.join(os.tmpdir(), 'fleetproof-sdk-'));
});

afterAll(async () => {
  await service?.close();
  for (const dir of [work, dataDir]) if (dir) await rm(dir, { recursive: true, force: true });
});

async function until(condition: () => boolean, timeoutMs: number, what: string, tick?: () => unknown) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('createFleetClient', () => {
  it('runs the README example: lists the critical devices, then streams failures', async () => {
    const facilities = createFleetClient({
      url: service.app.urls.graphql,
      token: await service.token('facilities', 'sdk-inventory'),
    });
    for (const [deviceId, criticality] of [
      ['sdk-plc-1', 'CRITICAL'],
      ['sdk-rtu-2', 'CRITICAL'],
      ['sdk-cam-3', 'STANDARD'],
    ] as const) {
      const { registerDevice } = await facilities.mutate(RegisterDeviceDocument, {
        input: { deviceId, deviceType: 'PLC', criticality },
      });
      expect(registerDevice.__typename).toBe('MutationRegisterDeviceSuccess');
    }

    // The example exactly as the README shows it, importing this checkout instead of the package.
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const example = /### A typed client[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example?.trim().split('\n')).toHaveLength(10);
    const script = path.join(work, 'example.mts');
    await writeFile(
      script,
      example!.replace("'fleetproof/client'", `'${path.join(ROOT, 'src/client/index.ts')}'`),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        FLEETPROOF_URL: service.app.urls.graphql,
        FLEETPROOF_TOKEN: await service.token('viewer', 'sdk-dashboard'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let errors = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    try {
      await until(() => output.includes('sdk-rtu-2'), 60_000, `the device list (${errors})`);
      expect(output).toContain('sdk-plc-1 PENDING');
      expect(output).not.toContain('sdk-cam-3');
      // A failure decided by the verifier, as the bus carries it; published until the stream is live.
      let seq = 0;
      await until(
        () => output.includes('sdk-plc-1 FAIL FIRMWARE_MISMATCH'),
        30_000,
        `the streamed failure (${errors})`,
        () => service.services.pubsub.publish('attestation.decided', failure('sdk-plc-1', (seq += 1))),
      );
    } finally {
      child.kill();
    }
  });

  it('resends a mutation whose response was lost in transit without applying it twice', async () => {
    // A proxy that lets the first request reach the server but drops its response.
    const target = new URL(service.app.urls.graphql);
    let connections = 0;
    const proxy = net.createServer((client) => {
      connections += 1;
      const upstream = net.connect(Number(target.port), target.hostname);
      client.pipe(upstream);
      if (connections === 1) upstream.once('data', () => client.destroy());
      else upstream.pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as net.AddressInfo).port;
    try {
      const admin = createFleetClient({
        url: `http://127.0.0.1:${port}/graphql`,
        token: await service.token('admin', 'sdk-admin'),
      });
      const name = `sdk-${randomUUID()}`;
      const { createApiToken } = await admin.mutate(CreateApiTokenDocument, { name, role: 'VIEWER' });
      expect(createApiToken.__typename).toBe('MutationCreateApiTokenSuccess');
      expect(connections).toBeGreaterThanOrEqual(2);
      expect(await service.services.database.orm.em.fork().count(ApiToken, { name })).toBe(1);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('keeps a subscription through a server restart: it reconnects, resubscribes and says so', async () => {
    const adminToken = await service.token('admin', 'sdk-feed');
    let reconnects = 0;
    const client = createFleetClient({
      url: service.app.urls.graphql,
      token: adminToken,
      onReconnect: () => (reconnects += 1),
    });
    const actions: string[] = [];
    const feed = client.subscribe(AuditEventsLiveDocument);
    const reading = (async () => {
      for await (const { auditEvents } of feed as AsyncIterable<AuditEventsLiveSubscription>) {
        if (auditEvents.__typename === 'AuditEvent') actions.push(auditEvents.subject);
      }
    })();
    await until(
      () => actions.length > 0,
      20_000,
      'the first event',
      () => service.token('viewer', 'sdk-before'),
    );

    // The same service comes back on the same port and database, as after a deploy.
    const port = new URL(service.app.urls.http).port;
    await service.stop();
    service = await startTestService({
      mqtt: 'embedded',
      databaseUrl: service.config.databaseUrl!,
      dataDir,
      env: { HTTP_PORT: port },
    });
    const before = actions.length;
    await until(
      () => actions.length > before,
      60_000,
      'an event after the restart',
      () => service.token('viewer', 'sdk-after'),
    );
    expect(reconnects).toBe(1);
    await feed.return?.();
    await client.close();
    await reading;
  });
});

function failure(deviceId: string, seq: number): AttestationDecidedEvent {
  const now = new Date().toISOString();
  return {
    seq: String(seq),
    challengeId: randomUUID(),
    deviceId,
    siteId: null,
    outcome: 'FAIL',
    reasons: ['FIRMWARE_MISMATCH'],
    nonceMatch: true,
    certChainValid: true,
    signatureValid: true,
    firmwareHash: null,
    timestamp: now,
    receivedAt: now,
    latencyMs: 12,
    riskScore: null,
    status: 'FAILED',
    decidedAt: now,
  };
}
