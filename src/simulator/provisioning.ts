import 'reflect-metadata';
import { webcrypto, KeyObject } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { ApproveDeviceDocument, type FleetClient } from '../client/index.js';
import type { DiceIdentity } from './dice-identity.js';

export interface Endpoints {
  /** Plain HTTP base (REST device routes and GraphQL), e.g. http://127.0.0.1:8080. */
  http: string;
  /** HTTPS base of the EST listener, e.g. https://127.0.0.1:8443. */
  https: string;
  caPem: string;
}

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface DeviceKeys {
  privateKey: KeyObject;
  cryptoKeys: CryptoKeyPair;
}

export async function generateDeviceKeys(): Promise<DeviceKeys> {
  const cryptoKeys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  return { cryptoKeys, privateKey: KeyObject.from(cryptoKeys.privateKey) };
}

async function postJson(
  url: string,
  token: string | undefined,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

function failure(step: string, status: number, json: Record<string, unknown>): Error {
  const why = typeof json.type === 'string' ? json.type : JSON.stringify(json);
  return new Error(`${step} failed (${status}): ${why}`);
}

/** Facilities registers the device in the inventory, with its commitment and golden firmware hash. */
export async function register(
  endpoints: Endpoints,
  token: string,
  deviceId: string,
  identity: DiceIdentity,
  type: string,
): Promise<void> {
  const { status, json } = await postJson(`${endpoints.http}/api/v1/cps/devices`, token, {
    device_id: deviceId,
    device_type: type,
    model: 'fleetproof-sim',
    criticality: 'critical',
    expected_cdi_commitment: identity.commitment,
    golden_firmware_hash: identity.firmwareHash,
  });
  if (status !== 200 && status !== 201) throw failure('registration', status, json);
}

/** The device asks for its one-time token with its commitment (REST form of the OTT request). */
export async function requestOtt(
  endpoints: Endpoints,
  deviceId: string,
  identity: DiceIdentity,
  type: string,
): Promise<string> {
  const { status, json } = await postJson(`${endpoints.http}/api/v1/cps/ott/request`, undefined, {
    device_id: deviceId,
    cdi_commitment: identity.commitment,
    device_type: type,
    firmware_version: '1.0.0',
    firmware_hash: identity.firmwareHash,
  });
  if (status !== 201) throw failure('OTT request', status, json);
  return String(json.ott);
}

/**
 * RFC 7030 simpleenroll over one TLS 1.3 connection whose RFC 9266 tls-exporter value the CSR carries
 * in challengePassword, so the CSR cannot be relayed to another session. Returns the certificate PEM.
 */
export async function enroll(
  endpoints: Endpoints,
  deviceId: string,
  ott: string,
  keys: DeviceKeys,
): Promise<string> {
  const { hostname, port } = new URL(endpoints.https);
  const socket = tls.connect({
    host: hostname,
    port: Number(port),
    ca: endpoints.caPem,
    minVersion: 'TLSv1.3',
    servername: hostname === '127.0.0.1' ? undefined : hostname,
  });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const binding = socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys: keys.cryptoKeys,
    signingAlgorithm: ECDSA,
    attributes: [new x509.ChallengePasswordAttribute(binding.toString('base64'))],
  });
  const body = csr.toString('base64');
  const response = await new Promise<{ status: number; text: string }>((resolve, reject) => {
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
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    request.once('error', reject);
    request.end(body);
  }).finally(() => socket.destroy());
  if (response.status !== 200)
    throw new Error(`EST enrollment failed (${response.status}): ${response.text}`);
  const certificates = new x509.X509Certificates(Buffer.from(response.text.replace(/\s/g, ''), 'base64'));
  const leaf = certificates[0];
  if (!leaf) throw new Error('EST response carried no certificate');
  return leaf.toString('pem');
}

/** An operator approves the device through GraphQL, waiting out the per-token mutation limit. */
export async function approve(operator: FleetClient, deviceId: string): Promise<void> {
  for (;;) {
    const { approveDevice: result } = await operator.mutate(ApproveDeviceDocument, { deviceId });
    if (result.__typename === 'MutationApproveDeviceSuccess') return;
    if (result.__typename === 'RateLimited') {
      await new Promise((resolve) => setTimeout(resolve, result.retryAfterSeconds * 1000));
      continue;
    }
    throw new Error(`approval failed: ${result.__typename}`);
  }
}
