import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { topics } from '../mqtt/topics.js';
import { signAttestationResponse, type UnsignedResponse } from './attestation-signer.js';
import type { Behaviour } from './behaviours.js';
import type { DiceIdentity } from './dice-identity.js';

interface Challenge {
  type: string;
  device_id: string;
  nonce: string;
  timestamp: string;
  challenge_id: string;
}

export interface DeviceCounters {
  challenges: number;
  answered: number;
}

/**
 * A provisioned virtual device on the broker: it answers each challenge as its behaviour says. An
 * honest device signs with its enrolled key over the canonical response; the others deviate in
 * exactly one way each, so the verifier's reasons can be seen one by one.
 */
export class VirtualDevice {
  private client: MqttClient | undefined;
  private counter = 0;
  readonly counters: DeviceCounters = { challenges: 0, answered: 0 };

  constructor(
    readonly deviceId: string,
    readonly behaviour: Behaviour,
    private readonly identity: DiceIdentity,
    private readonly privateKey: KeyObject,
    private readonly certificatePem: string,
    private readonly options: { slowMs: number },
  ) {}

  async connect(brokerUrl: string, caPem: string, keyPem: string): Promise<void> {
    this.client = await mqtt.connectAsync(brokerUrl, {
      clientId: this.deviceId,
      key: keyPem,
      cert: this.certificatePem,
      ca: caPem,
      protocolVersion: 4,
      reconnectPeriod: 2_000,
    });
    this.client.on('message', (_topic, payload) => {
      this.counters.challenges += 1;
      let challenge: Challenge;
      try {
        challenge = JSON.parse(payload.toString('utf8')) as Challenge;
      } catch {
        return;
      }
      void this.answer(challenge);
    });
    await this.client.subscribeAsync(topics.attestChallenge(this.deviceId), { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true);
  }

  private async answer(challenge: Challenge): Promise<void> {
    if (this.behaviour === 'silent') return;
    if (this.behaviour === 'slow') await new Promise((resolve) => setTimeout(resolve, this.options.slowMs));
    this.counter += 1;
    const unsigned: UnsignedResponse = {
      type: 'attestation_response',
      challenge_id: challenge.challenge_id,
      device_id: this.deviceId,
      nonce: challenge.nonce,
      firmware_hash: this.identity.firmwareHash,
      timestamp: new Date().toISOString(),
      counter: this.counter,
    };
    switch (this.behaviour) {
      case 'tampered-firmware': {
        const patched = Buffer.from(this.identity.firmware);
        patched[0] = (patched[0] ?? 0) ^ 0xff;
        unsigned.firmware_hash = `sha256:${createHash('sha256').update(patched).digest('hex')}`;
        break;
      }
      case 'clock-skew':
        unsigned.timestamp = new Date(Date.now() + 5 * 60_000).toISOString();
        break;
      case 'counter-rollback':
        unsigned.counter = Math.max(0, 1_000 - this.counter);
        break;
      case 'honest':
      case 'replay':
      case 'slow':
      case 'wrong-key':
        break;
    }
    const key =
      this.behaviour === 'wrong-key'
        ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey
        : this.privateKey;
    await this.publish(signAttestationResponse(unsigned, key, this.certificatePem));
    if (this.behaviour === 'replay') {
      // Answers the same challenge again with fresh-looking evidence: a replayed decision.
      await this.publish(
        signAttestationResponse(
          { ...unsigned, timestamp: new Date().toISOString(), counter: ++this.counter },
          key,
          this.certificatePem,
        ),
      );
    }
  }

  private async publish(response: object): Promise<void> {
    await this.client?.publishAsync(topics.attestResponse(this.deviceId), JSON.stringify(response), {
      qos: 1,
    });
    this.counters.answered += 1;
  }
}
