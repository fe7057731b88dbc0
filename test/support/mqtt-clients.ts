import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { IssuedCert } from './mqtt-pki.js';

export type ConnectOutcome =
  { ok: true; client: MqttClient } | { ok: false; code: number | undefined; message: string };

/**
 * One connection attempt as a device would make it (MQTT 3.1.1, no reconnects): resolves with the
 * client on CONNACK 0, or with the refusal (CONNACK return code, or the TLS/socket error).
 */
export function connectDevice(
  url: string,
  options: { clientId: string; cert?: IssuedCert; caPem: string; extra?: IClientOptions },
): Promise<ConnectOutcome> {
  const client = connect(url, {
    clientId: options.clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    ca: [options.caPem],
    rejectUnauthorized: true,
    ...(options.cert ? { key: options.cert.keyPem, cert: options.cert.chainPem } : {}),
    ...options.extra,
  });
  return new Promise((resolve) => {
    // Only our own listeners come off: mqtt.js keeps its connection state in listeners of its own.
    const onConnect = () => {
      settle();
      client.on('error', ignore);
      resolve({ ok: true, client });
    };
    const onError = (error: Error & { code?: unknown }) =>
      fail(typeof error.code === 'number' ? error.code : undefined, error.message);
    const onClose = () => fail(undefined, 'connection closed before CONNACK');
    const settle = () => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
    };
    const fail = (code: number | undefined, message: string) => {
      settle();
      client.on('error', ignore);
      client.end(true);
      resolve({ ok: false, code, message });
    };
    client.once('connect', onConnect);
    client.once('error', onError);
    client.once('close', onClose);
  });
}

function ignore(): void {}

export async function connectDeviceOrThrow(
  url: string,
  options: Parameters<typeof connectDevice>[1],
): Promise<MqttClient> {
  const outcome = await connectDevice(url, options);
  if (!outcome.ok) throw new Error(`device ${options.clientId} refused: ${outcome.code} ${outcome.message}`);
  return outcome.client;
}

/** Resolves when the client's connection is closed (at once if it already is). */
export function closed(client: MqttClient): Promise<void> {
  if (!client.connected) return Promise.resolve();
  return new Promise((resolve) => client.once('close', () => resolve()));
}

export interface Received {
  topic: string;
  payload: string;
}

/** Collects messages and lets a test wait for the first one matching a predicate (no timing). */
export class MessageCollector {
  readonly messages: Received[] = [];
  private waiters: { predicate: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];

  readonly push = (message: Received): void => {
    this.messages.push(message);
    this.waiters = this.waiters.filter((waiter) => {
      if (!waiter.predicate(message)) return true;
      waiter.resolve(message);
      return false;
    });
  };

  waitFor(predicate: (m: Received) => boolean): Promise<Received> {
    const existing = this.messages.find(predicate);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve) => this.waiters.push({ predicate, resolve }));
  }
}
