import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { canonicalJson } from '../../src/shared/jcs.js';
import { openssl } from './openssl.js';
import type { TestService } from './service.js';

export interface Challenge {
  type: string;
  device_id: string;
  nonce: string;
  timestamp: string;
  challenge_id: string;
}

export const FIRMWARE_HASH = `sha256:${'f1'.repeat(32)}`;

/**
 * A device under test whose key lives in a PEM file made by `openssl`, and whose responses are signed
 * by `openssl dgst -sha256 -sign` over the RFC 8785 canonical bytes: the signature format is the
 * standard one, not something private to our code.
 */
export class OpensslDevice {
  private counter = 0;
  readonly challenges: Challenge[] = [];
  private waiters: Array<(challenge: Challenge) => void> = [];
  client!: MqttClient;
  certificatePem!: string;

  private constructor(
    public service: TestService,
    readonly deviceId: string,
    readonly dir: string,
    readonly keyFile: string,
  ) {}

  /**
   * Registers, enrolls, connects to the broker and subscribes. By default the inventory pins
   * FIRMWARE_HASH as golden; with `firmware` the device is registered with a model and no pinned
   * golden value, and reports that firmware in its OTT request (so policy bundles judge it).
   */
  static async enroll(
    service: TestService,
    deviceId: string,
    firmware?: { model: string; version: string; hash: string },
  ): Promise<OpensslDevice> {
    const dir = await mkdtemp(path.join(os.tmpdir(), `fp-dev-${deviceId}-`));
    const keyFile = path.join(dir, 'device.key');
    const csrFile = path.join(dir, 'device.csr');
    const made = await openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-subj',
      `/CN=${deviceId}`,
      '-out',
      csrFile,
    ]);
    if (made.code !== 0) throw new Error(made.stderr);
    const { inventory, otts, enrollment, database } = service.services;
    const commitment = `sha256:${createHash('sha256').update(deviceId).digest('hex')}`;
    await inventory.register(
      database.orm.em.fork(),
      {
        device_id: deviceId,
        device_type: 'PLC',
        criticality: 'critical',
        expected_cdi_commitment: commitment,
        ...(firmware ? { model: firmware.model } : { golden_firmware_hash: FIRMWARE_HASH }),
      },
      'test',
    );
    const { ott } = firmware
      ? await otts.request(
          database.orm.em.fork(),
          {
            device_id: deviceId,
            cdi_commitment: commitment,
            device_type: 'PLC',
            firmware_version: firmware.version,
            firmware_hash: firmware.hash,
          },
          { address: '127.0.0.1', channel: 'rest' },
        )
      : await otts.issueForOperator(database.orm.em.fork(), deviceId, 'test');
    const result = await enrollment.enroll(database.orm.em.fork(), {
      ott,
      csr: await readFile(csrFile, 'utf8'),
      channelBinding: undefined,
      clientAddress: '127.0.0.1',
    });
    const device = new OpensslDevice(service, deviceId, dir, keyFile);
    device.certificatePem = result.certificate.pem;
    await device.connect(service);
    return device;
  }

  /** Connects (again) to `service`'s broker, for example after a restart of the service. */
  async connect(service: TestService): Promise<void> {
    this.service = service;
    this.client = await mqtt.connectAsync(service.app.urls.mqtt, {
      clientId: this.deviceId,
      key: await readFile(this.keyFile),
      cert: this.certificatePem,
      ca: service.services.ca.rootPem,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    this.client.on('message', (_topic, payload) => {
      const challenge = JSON.parse(payload.toString()) as Challenge;
      this.challenges.push(challenge);
      this.waiters.shift()?.(challenge);
    });
    await this.client.subscribeAsync(`cps/attest/challenge/${this.deviceId}`, { qos: 1 });
  }

  /** The next challenge not yet taken (waits for it to arrive). */
  nextChallenge(): Promise<Challenge> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** A response to `challenge`, signed by the device key unless `signWith` names another key file. */
  async response(
    challenge: Challenge,
    overrides: Record<string, unknown> = {},
    signWith: string = this.keyFile,
  ): Promise<Record<string, unknown>> {
    this.counter += 1;
    const unsigned: Record<string, unknown> = {
      type: 'attestation_response',
      challenge_id: challenge.challenge_id,
      device_id: this.deviceId,
      nonce: challenge.nonce,
      firmware_hash: FIRMWARE_HASH,
      timestamp: this.service.services.clock.now().toISOString(),
      counter: this.counter,
      ...overrides,
    };
    const dataFile = path.join(this.dir, `${randomBytes(4).toString('hex')}.json`);
    await writeFile(dataFile, canonicalJson(unsigned));
    const signed = await openssl(['dgst', '-sha256', '-sign', signWith, '-binary', dataFile]);
    if (signed.code !== 0) throw new Error(signed.stderr);
    return {
      ...unsigned,
      signature: Buffer.from(signed.stdout, 'latin1').toString('base64'),
      cert_chain: [this.certificatePem],
    };
  }

  async publish(
    response: Record<string, unknown> | string,
    topic = `cps/attest/response/${this.deviceId}`,
  ): Promise<void> {
    await this.client.publishAsync(
      topic,
      typeof response === 'string' ? response : JSON.stringify(response),
      { qos: 1 },
    );
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }

  /** Closes the connection and removes the key material. */
  async dispose(): Promise<void> {
    await this.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}
