import { readFile } from 'node:fs/promises';
import { AttestationEventsDocument, createFleetClient, type FleetClient } from '../client/index.js';
import { assignBehaviours, type Behaviour } from './behaviours.js';
import { newDiceIdentity } from './dice-identity.js';
import { approve, enroll, generateDeviceKeys, register, requestOtt, type Endpoints } from './provisioning.js';
import { VirtualDevice } from './virtual-device.js';

export interface SimulateOptions {
  devices: number;
  behaviour: string;
  api: string;
  http: string;
  broker: string;
  ca: string;
  facilitiesToken: string | undefined;
  operatorToken: string | undefined;
  approve: boolean;
  prefix: string;
  type: string;
  concurrency: number;
  duration: number | undefined;
  slowMs: number;
}

interface Tally {
  enrolled: number;
  failedProvisioning: Map<string, number>;
  outcomes: Map<string, number>;
}

/**
 * `fleetproof simulate`: provisions N virtual DICE devices exactly as real ones would (inventory, OTT,
 * EST with channel binding, optional approval), connects them to the broker and answers challenges
 * until the duration ends or SIGINT. Results come back from the service's attestationEvents feed.
 */
export async function runSimulation(
  options: SimulateOptions,
  out: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  if (!options.facilitiesToken)
    throw new Error('a facilities token is required (--facilities-token or FLEETPROOF_FACILITIES_TOKEN)');
  if (options.approve && !options.operatorToken)
    throw new Error('--approve needs an operator token (--operator-token or FLEETPROOF_OPERATOR_TOKEN)');
  const endpoints: Endpoints = {
    http: options.http,
    https: options.api,
    caPem: await readFile(options.ca, 'utf8'),
  };
  const behaviours = assignBehaviours(options.behaviour, options.devices);
  const runId = Math.random().toString(36).slice(2, 7);
  const tally: Tally = { enrolled: 0, failedProvisioning: new Map(), outcomes: new Map() };
  const devices: VirtualDevice[] = [];
  const ourIds = new Set<string>();

  const operator = options.operatorToken
    ? createFleetClient({ url: `${options.http}/graphql`, token: options.operatorToken })
    : undefined;
  const stopFeed = operator ? watchResults(operator, ourIds, tally) : () => Promise.resolve();
  const progress = setInterval(() => {
    const answered = devices.reduce((sum, device) => sum + device.counters.answered, 0);
    out.write(
      `[simulate] enrolled ${tally.enrolled}/${options.devices}, connected ${devices.length}, answered ${answered}, results ${format(tally.outcomes)}\n`,
    );
  }, 1_000);

  let next = 0;
  const worker = async () => {
    while (next < behaviours.length) {
      const index = next++;
      const behaviour = behaviours[index]!;
      const deviceId = `${options.prefix}-${runId}-${String(index).padStart(5, '0')}`;
      try {
        devices.push(await provisionOne(options, endpoints, operator, deviceId, behaviour));
        ourIds.add(deviceId);
        tally.enrolled += 1;
      } catch (error) {
        const key = (error as Error).message.split(':')[0] ?? 'error';
        tally.failedProvisioning.set(key, (tally.failedProvisioning.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));

  await new Promise<void>((resolve) => {
    const timer = options.duration !== undefined ? setTimeout(resolve, options.duration * 1000) : undefined;
    process.once('SIGINT', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  clearInterval(progress);
  await stopFeed();
  await operator?.close();
  await Promise.allSettled(devices.map((device) => device.close()));

  const byBehaviour = new Map<Behaviour, number>();
  for (const device of devices)
    byBehaviour.set(device.behaviour, (byBehaviour.get(device.behaviour) ?? 0) + 1);
  const challenges = devices.reduce((sum, device) => sum + device.counters.challenges, 0);
  const answered = devices.reduce((sum, device) => sum + device.counters.answered, 0);
  out.write(
    [
      '',
      'simulation summary',
      `  devices enrolled:   ${tally.enrolled}/${options.devices} (${format(byBehaviour)})`,
      ...(tally.failedProvisioning.size
        ? [`  provisioning failed: ${format(tally.failedProvisioning)}`]
        : []),
      `  challenges:         ${challenges} received, ${answered} answers sent`,
      `  results:            ${tally.outcomes.size ? format(tally.outcomes) : options.operatorToken ? 'none yet' : 'pass --operator-token to follow results'}`,
      '',
    ].join('\n'),
  );
  return tally.enrolled === options.devices ? 0 : 1;
}

async function provisionOne(
  options: SimulateOptions,
  endpoints: Endpoints,
  operator: FleetClient | undefined,
  deviceId: string,
  behaviour: Behaviour,
): Promise<VirtualDevice> {
  const identity = newDiceIdentity();
  const keys = await generateDeviceKeys();
  await register(endpoints, options.facilitiesToken!, deviceId, identity, options.type);
  const ott = await requestOtt(endpoints, deviceId, identity, options.type);
  const certificatePem = await enroll(endpoints, deviceId, ott, keys);
  if (options.approve && operator) await approve(operator, deviceId);
  const device = new VirtualDevice(deviceId, behaviour, identity, keys.privateKey, certificatePem, {
    slowMs: options.slowMs,
  });
  await device.connect(
    options.broker,
    endpoints.caPem,
    keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  );
  return device;
}

/** Follows attestationEvents and tallies outcomes (and failure reasons) of this run's devices. */
function watchResults(operator: FleetClient, ourIds: Set<string>, tally: Tally): () => Promise<void> {
  const events = operator.subscribe(AttestationEventsDocument, {});
  void (async () => {
    for await (const { attestationEvents: event } of events) {
      if (event.__typename === 'MissedEvents') {
        tally.outcomes.set('MISSED', (tally.outcomes.get('MISSED') ?? 0) + event.dropped);
        continue;
      }
      if (!ourIds.has(event.device.deviceId)) continue;
      const key = event.outcome === 'FAIL' ? `FAIL(${event.reasons.join('+')})` : event.outcome;
      tally.outcomes.set(key, (tally.outcomes.get(key) ?? 0) + 1);
    }
  })().catch(() => undefined);
  return async () => {
    // Closing the client settles the iterator: nothing to report at shutdown.
    await events.return?.();
  };
}

function format(counts: Map<string, number>): string {
  return [...counts.entries()].map(([key, value]) => `${key} ${value}`).join(', ') || '-';
}
