import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import type { EventRelay } from './event-bus.js';

/** The one channel every instance publishes its events on and listens to. */
const CHANNEL = 'fleetproof:events';

export interface RedisEventRelay extends EventRelay {
  close(): Promise<void>;
}

interface Envelope {
  /** The sending process, so an instance skips its own events (it dispatched them already). */
  origin: string;
  topic: string;
  payload: unknown;
}

/**
 * The app's events across the service instances of a deployment, over Redis pub/sub: each instance
 * publishes its own events on one channel and dispatches the others' to its subscribers.
 *
 * - Its own events never wait for Redis: the bus dispatches them in process first, and the relay
 *   drops them when they come back.
 * - Pub/sub delivers at most once. An instance cut off from Redis misses what the others sent
 *   meanwhile; what depends on it catches up on its own (GraphQL feeds resume by cursor, the
 *   isolation list and the risk pass reread the database periodically). A send that fails after
 *   ioredis' retries is logged, never thrown into the publisher.
 * - Whoever can publish on this Redis can put events in front of every instance's subscribers, so
 *   Redis is a trusted component: authenticated (`redis://user:password@...`) and on a private
 *   network or TLS (`rediss://`).
 */
export async function connectRedisEventRelay(url: string, logger: Logger): Promise<RedisEventRelay> {
  const log = logger.child({ component: 'event-relay' });
  const origin = randomUUID();
  const publisher = new Redis(url, { lazyConnect: true });
  const subscriber = publisher.duplicate();
  for (const client of [publisher, subscriber]) {
    client.on('error', (error: unknown) => log.warn({ err: error }, 'Redis connection error'));
  }
  try {
    await Promise.all([publisher.connect(), subscriber.connect()]);
    await subscriber.subscribe(CHANNEL);
  } catch (error) {
    publisher.disconnect();
    subscriber.disconnect();
    const { host } = new URL(url);
    throw new Error(`REDIS_URL: Redis at ${host} is not reachable (${String(error)})`, { cause: error });
  }

  const received = new EventTarget();
  // One listener per live subscription, as on the bus itself.
  setMaxListeners(0, received);
  subscriber.on('message', (_channel: string, message: string) => {
    const envelope = parseEnvelope(message);
    if (!envelope) {
      log.warn({ bytes: message.length }, 'ignored a message on the event channel that is not an event');
      return;
    }
    if (envelope.origin === origin) return;
    received.dispatchEvent(new CustomEvent(envelope.topic, { detail: envelope.payload }));
  });
  log.info({ channel: CHANNEL }, 'events relayed between instances through Redis');

  return {
    received,
    send(topic, payload) {
      const envelope: Envelope = { origin, topic, payload };
      publisher.publish(CHANNEL, JSON.stringify(envelope)).catch((error: unknown) => {
        log.error({ err: error, topic }, 'event not relayed to the other instances');
      });
    },
    async close() {
      await Promise.allSettled([subscriber.quit(), publisher.quit()]);
    },
  };
}

function parseEnvelope(message: string): Envelope | undefined {
  try {
    const value = JSON.parse(message) as Partial<Envelope> | null;
    if (typeof value?.origin === 'string' && typeof value.topic === 'string' && 'payload' in value) {
      return value as Envelope;
    }
  } catch {
    // not JSON: reported by the caller
  }
  return undefined;
}
