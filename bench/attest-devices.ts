/**
 * The attestation benchmark's devices, in a process of their own (forked by bench/attest.ts) so
 * that their signing and MQTT work is not counted as the verifier's. Each device answers every
 * challenge on its own topic over a real broker, signed with its enrolled key as
 * schema/asyncapi.yaml says, and notes when it published each answer. The devices share a few
 * connections (each subscribed to its devices' challenge topics) instead of one socket each.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { signAttestationResponse } from '../src/simulator/attestation-signer.js';

export interface BenchDeviceSpec {
  deviceId: string;
  privateKeyPem: string;
  certificatePem: string;
  firmwareHash: string;
}

export type ToDevices =
  | { type: 'start'; broker: string; connections: number; devices: BenchDeviceSpec[] }
  /** The measured window starts: CPU is counted from here. */
  | { type: 'mark' }
  | { type: 'report' }
  | { type: 'stop' };

export type FromDevices =
  | { type: 'ready' }
  | {
      type: 'report';
      /** [challenge id, epoch ms with sub-millisecond precision] per answer published. */
      published: Array<[string, number]>;
      cpuSeconds: number;
      errors: number;
    };

interface Device extends BenchDeviceSpec {
  key: KeyObject;
  counter: number;
}

const epochMs = () => performance.timeOrigin + performance.now();
const send = (message: FromDevices) => process.send!(message);

const clients: MqttClient[] = [];
const published: Array<[string, number]> = [];
let errors = 0;
let cpuAtMark = process.cpuUsage();

async function start(message: Extract<ToDevices, { type: 'start' }>): Promise<void> {
  const devices = new Map<string, Device>(
    message.devices.map((spec) => [
      spec.deviceId,
      { ...spec, key: createPrivateKey(spec.privateKeyPem), counter: 0 },
    ]),
  );
  const all = [...devices.values()];
  const perConnection = Math.ceil(all.length / message.connections);
  for (let index = 0; index < message.connections; index += 1) {
    const mine = all.slice(index * perConnection, (index + 1) * perConnection);
    if (mine.length === 0) break;
    const client = await mqtt.connectAsync(message.broker, {
      clientId: `fleetproof-bench-devices-${process.pid}-${index}`,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 0,
    });
    client.on('message', (topic, payload) => {
      const device = devices.get(topic.slice(topic.lastIndexOf('/') + 1));
      if (!device) return;
      try {
        const challenge = JSON.parse(payload.toString('utf8')) as { challenge_id: string; nonce: string };
        device.counter += 1;
        const response = signAttestationResponse(
          {
            type: 'attestation_response',
            challenge_id: challenge.challenge_id,
            device_id: device.deviceId,
            nonce: challenge.nonce,
            firmware_hash: device.firmwareHash,
            timestamp: new Date().toISOString(),
            counter: device.counter,
          },
          device.key,
          device.certificatePem,
        );
        published.push([challenge.challenge_id, epochMs()]);
        client.publish(
          `cps/attest/response/${device.deviceId}`,
          JSON.stringify(response),
          { qos: 1 },
          (error) => {
            if (error) errors += 1;
          },
        );
      } catch {
        errors += 1;
      }
    });
    await client.subscribeAsync(
      mine.map((device) => `cps/attest/challenge/${device.deviceId}`),
      { qos: 1 },
    );
    clients.push(client);
  }
  send({ type: 'ready' });
}

process.on('message', (message: ToDevices) => {
  switch (message.type) {
    case 'start':
      start(message).catch((error: unknown) => {
        console.error(error);
        process.exit(1);
      });
      break;
    case 'mark':
      cpuAtMark = process.cpuUsage();
      break;
    case 'report': {
      const cpu = process.cpuUsage(cpuAtMark);
      send({ type: 'report', published, cpuSeconds: (cpu.user + cpu.system) / 1e6, errors });
      break;
    }
    case 'stop':
      void Promise.all(clients.map((client) => client.endAsync(true))).finally(() => process.exit(0));
      break;
  }
});
