import {
  connect,
  ErrorWithSubackPacket,
  type IClientOptions,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt';
import type { Logger } from '../observability/logger.js';
import { topicMatchesFilter } from './topics.js';

export type QoS = 0 | 1 | 2;

export type ServiceMqttStatus = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Snapshot for the health endpoint. */
export interface ServiceMqttState {
  status: ServiceMqttStatus;
  /** When `status` last changed. */
  since: Date;
  lastError: string | null;
  lastErrorAt: Date | null;
}

export interface MqttMessage {
  topic: string;
  payload: Buffer;
  packet: IPublishPacket;
}

/** May be async; a throw or rejection is logged and never reaches the MQTT client or the process. */
export type MqttMessageHandler = (message: MqttMessage) => void | Promise<void>;

export interface ServiceMqttClientOptions {
  /** `mqtts://host:port` (mutual TLS, e.g. the embedded broker) or `mqtt://host:port`. */
  url: string;
  tls?: { keyPem: string; certPem: string; caPems: string[] };
  clientId: string;
  logger: Logger;
  /** 5 by default; the embedded broker (aedes) needs 4, see EMBEDDED_BROKER_PROTOCOL_VERSION. */
  protocolVersion?: 4 | 5;
  /** Exponential backoff with jitter between reconnect attempts. Defaults: 1 s doubling up to 30 s. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  connectTimeoutMs?: number;
}

export interface ServicePublishOptions {
  qos: QoS;
  /** MQTT 5 only (3.3.2.3.3); not sent over 3.1.1, which has no expiry. */
  messageExpiryIntervalS?: number;
  retain?: boolean;
}

export interface ServiceMqttClient {
  readonly state: ServiceMqttState;
  readonly protocolVersion: 4 | 5;
  /**
   * Resolves when the broker accepted the message (PUBACK/PUBCOMP for QoS 1/2, written for QoS 0).
   * Rejects with MqttNotConnectedError at once while offline, rather than queueing without bound.
   */
  publish(topic: string, payload: string | Buffer, options: ServicePublishOptions): Promise<void>;
  /**
   * Registers the handler and subscribes; the filters are subscribed again after every reconnect.
   * Resolves when the broker granted them (at once when offline: they are sent on connect); rejects
   * with MqttSubscriptionRefusedError when the broker refused one (the registration is then removed).
   */
  subscribe(
    topicFilters: string | readonly string[],
    handler: MqttMessageHandler,
    options?: { qos?: QoS },
  ): Promise<void>;
  /** Resolves once connected (at once if already); rejects if the client is closed first. */
  waitForConnection(): Promise<void>;
  close(): Promise<void>;
}

export class MqttNotConnectedError extends Error {
  override readonly name = 'MqttNotConnectedError';
  constructor(status: ServiceMqttStatus) {
    super(`MQTT client not connected (${status})`);
  }
}

export class MqttSubscriptionRefusedError extends Error {
  override readonly name = 'MqttSubscriptionRefusedError';
  constructor(readonly topicFilters: string[]) {
    super(`MQTT broker refused subscription to ${topicFilters.join(', ')}`);
  }
}

interface Registration {
  qos: QoS;
  handlers: Set<MqttMessageHandler>;
}

const DEFAULT_INITIAL_DELAY_MS = 1_000;
const DEFAULT_MAX_DELAY_MS = 30_000;

export function createServiceMqttClient(options: ServiceMqttClientOptions): ServiceMqttClient {
  const log = options.logger.child({ clientId: options.clientId });
  const protocolVersion = options.protocolVersion ?? 5;
  const initialDelayMs = options.reconnect?.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS;
  const maxDelayMs = options.reconnect?.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;

  const state: ServiceMqttState = {
    status: 'connecting',
    since: new Date(),
    lastError: null,
    lastErrorAt: null,
  };
  const registrations = new Map<string, Registration>();
  const connectionWaiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  let attempt = 0;
  let closed = false;

  /** "Equal jitter": half the exponential delay fixed, half random, so a fleet of restarts spreads out. */
  function backoffDelay(n: number): number {
    const exponential = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(n, 30));
    // reconnectPeriod 0 would switch reconnecting off in mqtt.js.
    return Math.max(1, Math.round(exponential / 2 + Math.random() * (exponential / 2)));
  }

  function setStatus(status: ServiceMqttStatus): void {
    if (state.status === status) return;
    state.status = status;
    state.since = new Date();
    log.info({ status }, 'mqtt connection status');
  }

  const clientOptions: IClientOptions = {
    clientId: options.clientId,
    protocolVersion,
    clean: true,
    // Resubscription is ours (on every connect, below): mqtt.js only remembers filters whose
    // SUBSCRIBE it sent itself and skips the first connection.
    resubscribe: false,
    reconnectPeriod: backoffDelay(0),
    // A refusal (e.g. the broker not trusting us yet) should be retried with backoff, not end the client.
    reconnectOnConnackError: true,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    // mqtt.js switches to TLS whenever key and cert are given, even for an mqtt:// URL (a plain
    // listener then drops the connection as a protocol error): pass them for mqtts:// only.
    ...(options.tls && new URL(options.url).protocol === 'mqtts:'
      ? {
          key: options.tls.keyPem,
          cert: options.tls.certPem,
          ca: options.tls.caPems,
          rejectUnauthorized: true,
        }
      : {}),
  };

  const client: MqttClient = connect(options.url, clientOptions);

  // mqtt.js arms its reconnect timer from options.reconnectPeriod on each 'close'; 'reconnect' fires just
  // before an attempt, so the period set here is the wait after this attempt fails (MQTT.js#1742).
  client.on('reconnect', () => {
    attempt += 1;
    client.options.reconnectPeriod = backoffDelay(attempt);
    setStatus('reconnecting');
  });
  client.on('connect', (connack) => {
    attempt = 0;
    client.options.reconnectPeriod = backoffDelay(0);
    setStatus('connected');
    for (const waiter of connectionWaiters) waiter.resolve();
    connectionWaiters.clear();
    if (connack.sessionPresent !== true && registrations.size > 0) {
      void sendSubscribe([...registrations.keys()]).catch((error: unknown) => {
        log.error({ err: error }, 'mqtt resubscription failed');
      });
    }
  });
  client.on('close', () => {
    if (!closed) setStatus('reconnecting');
  });
  client.on('error', (error) => {
    state.lastError = error.message;
    state.lastErrorAt = new Date();
    log.warn({ err: error.message, attempt }, 'mqtt client error');
  });
  client.on('message', (topic, payload, packet) => {
    const handlers = new Set<MqttMessageHandler>();
    for (const [filter, registration] of registrations) {
      if (topicMatchesFilter(filter, topic))
        for (const handler of registration.handlers) handlers.add(handler);
    }
    for (const handler of handlers) runHandler(handler, { topic, payload, packet });
  });

  function runHandler(handler: MqttMessageHandler, message: MqttMessage): void {
    void (async () => {
      try {
        await handler(message);
      } catch (error) {
        log.error({ err: error, topic: message.topic }, 'mqtt message handler failed');
      }
    })();
  }

  /** Subscribes to the filters; returns those the broker refused. */
  async function sendSubscribe(filters: string[]): Promise<string[]> {
    const request: Record<string, { qos: QoS }> = {};
    for (const filter of filters) {
      const registration = registrations.get(filter);
      if (registration) request[filter] = { qos: registration.qos };
    }
    const requested = Object.keys(request);
    if (requested.length === 0) return [];
    try {
      await client.subscribeAsync(request);
      return [];
    } catch (error) {
      // mqtt.js rejects when any return code is a failure (>= 0x80: SUBACK 128 in 3.1.1, reason codes
      // in 5); the SUBACK lists them in request order. Without a SUBACK the connection was lost.
      const granted =
        error instanceof ErrorWithSubackPacket
          ? (error.packet as ErrorWithSubackPacket['packet'] | undefined)?.granted
          : undefined;
      if (!granted) throw error;
      const refused = requested.filter((_filter, i) => {
        const code = granted[i];
        return typeof code !== 'number' || code >= 0x80;
      });
      log.error({ topicFilters: refused }, 'mqtt subscription refused');
      return refused;
    }
  }

  return {
    get state() {
      return { ...state };
    },
    protocolVersion,

    async publish(topic, payload, publishOptions) {
      if (state.status !== 'connected') throw new MqttNotConnectedError(state.status);
      await client.publishAsync(topic, payload, {
        qos: publishOptions.qos,
        retain: publishOptions.retain ?? false,
        ...(protocolVersion === 5 && publishOptions.messageExpiryIntervalS !== undefined
          ? { properties: { messageExpiryInterval: publishOptions.messageExpiryIntervalS } }
          : {}),
      });
    },

    async subscribe(topicFilters, handler, subscribeOptions) {
      if (closed) throw new MqttNotConnectedError('closed');
      const filters = typeof topicFilters === 'string' ? [topicFilters] : [...topicFilters];
      const qos = subscribeOptions?.qos ?? 1;
      // Handler first: a retained message may arrive right after the SUBACK.
      for (const filter of filters) {
        const registration = registrations.get(filter);
        if (registration) {
          registration.handlers.add(handler);
          registration.qos = Math.max(registration.qos, qos) as QoS;
        } else {
          registrations.set(filter, { qos, handlers: new Set([handler]) });
        }
      }
      if (state.status !== 'connected') return;
      let refused: string[];
      try {
        refused = await sendSubscribe(filters);
      } catch (error) {
        if (closed) throw error;
        // The connection dropped mid-way: the 'connect' handler subscribes again.
        log.warn({ err: error, topicFilters: filters }, 'mqtt subscribe interrupted; retried on reconnect');
        return;
      }
      if (refused.length > 0) {
        for (const filter of refused) {
          const registration = registrations.get(filter);
          registration?.handlers.delete(handler);
          if (registration?.handlers.size === 0) registrations.delete(filter);
        }
        throw new MqttSubscriptionRefusedError(refused);
      }
    },

    waitForConnection() {
      if (state.status === 'connected') return Promise.resolve();
      if (closed) return Promise.reject(new MqttNotConnectedError('closed'));
      return new Promise<void>((resolve, reject) => {
        connectionWaiters.add({ resolve, reject });
      });
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const waiter of connectionWaiters) waiter.reject(new MqttNotConnectedError('closed'));
      connectionWaiters.clear();
      // Connected: send DISCONNECT after in-flight acks; offline: nothing to flush, stop retrying.
      await client.endAsync(!client.connected);
      setStatus('closed');
    },
  };
}
