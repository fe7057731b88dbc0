import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let ca: string;

beforeAll(async () => {
  service = await startTestService({
    mqtt: 'embedded',
    env: { FLEETPROOF_EST_REQUIRE_CHANNEL_BINDING: 'true' },
  });
  ca = await readFile(path.join(service.dataDir, 'pki', 'root-ca.pem'), 'utf8');
});

afterAll(async () => {
  await service?.close();
});

const commitment = (deviceId: string) => `sha256:${createHash('sha256').update(deviceId).digest('hex')}`;

async function prepare(deviceId: string): Promise<string> {
  await service.services.inventory.register(
    service.services.database.orm.em.fork(),
    { device_id: deviceId, device_type: 'RTU' },
    'test',
  );
  const { ott } = await service.services.otts.request(
    service.services.database.orm.em.fork(),
    {
      device_id: deviceId,
      cdi_commitment: commitment(deviceId),
      device_type: 'RTU',
      firmware_version: '2.1',
    },
    { address: '127.0.0.1', channel: 'rest' },
  );
  return ott;
}

/**
 * Opens one TLS connection, derives its RFC 9266 tls-exporter value, signs a CSR carrying
 * `binding(value)` as challengePassword, and posts it on that same connection (RFC 7030 3.5).
 */
async function enrollOverOneConnection(deviceId: string, ott: string, binding: (exporter: Buffer) => string) {
  const { port } = new URL(service.app.urls.https);
  const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca, minVersion: 'TLSv1.3' });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const exporter = socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, false, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys,
    signingAlgorithm: algorithm,
    attributes: [new x509.ChallengePasswordAttribute(binding(exporter))],
  });
  const body = csr.toString('base64');
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = https.request(
      {
        method: 'POST',
        path: '/.well-known/est/simpleenroll',
        createConnection: () => socket,
        headers: {
          'content-type': 'application/pkcs10',
          authorization: `Bearer ${ott}`,
          'content-length': Buffer.byteLength(body),
        },
      },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => {
          socket.destroy();
          resolve({ status: response.statusCode ?? 0, body: text });
        });
      },
    );
    request.once('error', reject);
    request.end(body);
  });
}

describe('TLS channel binding (RFC 7030 3.5, RFC 9266)', () => {
  it("enrolls when the CSR carries this connection's tls-exporter value", async () => {
    const deviceId = 'rtu-bound-1';
    const response = await enrollOverOneConnection(deviceId, await prepare(deviceId), (value) =>
      value.toString('base64'),
    );
    expect(response.status, response.body).toBe(200);
  });

  it('refuses a CSR bound to another connection', async () => {
    const deviceId = 'rtu-relayed-1';
    const response = await enrollOverOneConnection(deviceId, await prepare(deviceId), () =>
      Buffer.alloc(32, 7).toString('base64'),
    );
    expect(response.status).toBe(400);
    expect((JSON.parse(response.body) as { type: string }).type).toBe(
      'urn:fleetproof:problem:channel-binding-mismatch',
    );
  });

  it('refuses a CSR without a binding when the setting requires one', async () => {
    const deviceId = 'rtu-unbound-1';
    const ott = await prepare(deviceId);
    const { port } = new URL(service.app.urls.https);
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
      'sign',
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${deviceId}`,
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = https.request(
        `https://127.0.0.1:${port}/.well-known/est/simpleenroll`,
        {
          method: 'POST',
          ca,
          headers: { 'content-type': 'application/pkcs10', authorization: `Bearer ${ott}` },
        },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      request.once('error', reject);
      request.end(csr.toString('base64'));
    });
    expect(result.status).toBe(400);
    expect((JSON.parse(result.body) as { type: string }).type).toBe(
      'urn:fleetproof:problem:channel-binding-required',
    );
  });
});
