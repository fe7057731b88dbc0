import { X509Certificate } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import tls, { TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { Logger } from '../observability/logger.js';
import { TOPIC_TABLE, deviceIdOf, isValidDeviceId, parseTopic, topics } from './topics.js';

/** aedes speaks MQTT 3.1.1 only: clients of the embedded broker must connect with protocol level 4. */
export const EMBEDDED_BROKER_PROTOCOL_VERSION = 4;

/** SAN URI that marks the service's own client certificate. */
export const SERVICE_IDENTITY_URI = 'urn:fleetproof:service';
/** Client ids the service may use (it may run several clients, e.g. one per process). */
export const SERVICE_CLIENT_ID_PREFIX = 'fleetproof-service';

export interface PeerCertificateInfo {
  /** Lowercase hex of the serial number as encoded in the certificate (Node's `serialNumber`), no separators. */
  serialHex: string;
  commonName: string;
  /** Lowercase hex SHA-256 of the DER certificate, no separators. */
  fingerprintSha256: string;
}

export type MqttIdentity =
  | ({ kind: 'device'; deviceId: string } & PeerCertificateInfo)
  | ({ kind: 'bootstrap'; deviceId: string } & PeerCertificateInfo)
  | ({ kind: 'service' } & PeerCertificateInfo);

export interface EmbeddedBrokerOptions {
  host: string;
  /** 0 picks a free port; the bound one is reported as `port`. */
  port: number;
  tls: {
    keyPem: string;
    certPem: string;
    /** Trust anchors for client certificates: internal CA root + issuing, optionally manufacturer roots. */
    caPems: string[];
    /**
     * CA certificates allowed to issue the service certificate (SAN URI urn:fleetproof:service).
     * Defaults to caPems. Set it to the internal issuing CA whenever caPems holds manufacturer roots,
     * or a manufacturer could mint a certificate with full broker rights.
     */
    serviceIssuerPems?: string[];
  };
  /** Called on every CONNECT; a throw refuses the connection as "server unavailable" (fail closed). */
  isCertificateRevoked?: (info: PeerCertificateInfo) => Promise<boolean>;
  /**
   * For a client certificate outside caPems: whether it is a manufacturer (IDevID) chain of a known
   * enrollment group. Such a client is a *bootstrap* identity that may only ask for an enrollment token.
   * Receives the presented chain (DER, leaf first); resolves to the device id, or undefined to refuse.
   */
  authenticateManufacturerChain?: (chain: Buffer[]) => Promise<string | undefined>;
  /** Whether this device is the controller of that site: who may publish the site's heartbeats. */
  isSiteController?: (deviceId: string, siteId: string) => Promise<boolean>;
  /** Extra publish policy for devices (isolation); called after the topic rules passed. */
  canPublish?: (identity: MqttIdentity, topic: string) => Promise<boolean>;
  logger: Logger;
}

export interface EmbeddedBroker {
  readonly port: number;
  close(): Promise<void>;
  /** Closes that client's connection now (e.g. its certificate was revoked); false if not connected. */
  disconnect(clientId: string): boolean;
  isConnected(clientId: string): boolean;
  connectedClients(): number;
}

/** MQTT 3.1.1 CONNACK return codes (3.2.2.3); aedes' AuthErrorCode is an ambient const enum. */
const CONNACK = {
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

class ConnectRefused extends Error {
  constructor(
    readonly returnCode: (typeof CONNACK)[keyof typeof CONNACK],
    readonly reason: string,
  ) {
    super(reason);
  }
}

const DEVICE_PUBLISH_KINDS = new Set(
  (Object.keys(TOPIC_TABLE) as (keyof typeof TOPIC_TABLE)[]).filter(
    (kind) => TOPIC_TABLE[kind].publisher === 'device',
  ),
);

function hasSanUri(cert: X509Certificate, uri: string): boolean {
  // Node quotes any entry holding a separator, so an exact entry match cannot be forged from inside
  // another SAN value (CVE-2021-44532).
  return (cert.subjectAltName ?? '').split(', ').some((entry) => entry === `URI:${uri}`);
}

function commonNameOf(cert: X509Certificate): string | undefined {
  // One `CN=` line per RDN; several CNs are ambiguous, so refuse them.
  const cns = cert.subject.split('\n').filter((line) => line.startsWith('CN='));
  return cns.length === 1 ? cns[0]?.slice(3) : undefined;
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const log = options.logger;
  const identities = new WeakMap<Client, MqttIdentity>();
  const clients = new Map<string, Client>();
  const serviceIssuers = (options.tls.serviceIssuerPems ?? options.tls.caPems).map(
    (pem) => new X509Certificate(pem),
  );

  async function identify(client: Client): Promise<MqttIdentity> {
    const socket = client.conn;
    if (!(socket instanceof TLSSocket)) {
      throw new ConnectRefused(CONNACK.notAuthorized, 'not a TLS connection');
    }
    // rejectUnauthorized is false on the server so that a refused device receives a CONNACK code it can
    // log and act on, instead of a bare TLS alert; the chain check is therefore enforced here.
    if (!socket.authorized) return identifyBootstrap(client, socket);
    const cert = socket.getPeerX509Certificate();
    if (!cert) throw new ConnectRefused(CONNACK.badUsernameOrPassword, 'no client certificate');
    const commonName = commonNameOf(cert);
    if (commonName === undefined) {
      throw new ConnectRefused(CONNACK.badUsernameOrPassword, 'client certificate needs exactly one CN');
    }
    const info: PeerCertificateInfo = {
      serialHex: cert.serialNumber.toLowerCase(),
      commonName,
      fingerprintSha256: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
    };

    let identity: MqttIdentity;
    if (hasSanUri(cert, SERVICE_IDENTITY_URI)) {
      // Only the internal CA may mint the all-powerful service identity, not a manufacturer root.
      if (!serviceIssuers.some((issuer) => cert.checkIssued(issuer) && cert.verify(issuer.publicKey))) {
        throw new ConnectRefused(
          CONNACK.notAuthorized,
          'service certificate from a CA not allowed to issue it',
        );
      }
      if (!client.id.startsWith(SERVICE_CLIENT_ID_PREFIX)) {
        throw new ConnectRefused(
          CONNACK.identifierRejected,
          `service client id must start with ${SERVICE_CLIENT_ID_PREFIX}`,
        );
      }
      identity = { kind: 'service', ...info };
    } else {
      // An id outside the pattern could smuggle wildcards or levels into the per-device topic rules.
      if (!isValidDeviceId(commonName)) {
        throw new ConnectRefused(CONNACK.badUsernameOrPassword, 'certificate CN is not a valid device id');
      }
      // Client id = CN (as AWS IoT does): otherwise a device could connect under another device's client
      // id and take over (disconnect and replace) that device's session.
      if (client.id !== commonName) {
        throw new ConnectRefused(CONNACK.identifierRejected, 'client id must equal the certificate CN');
      }
      identity = { kind: 'device', deviceId: commonName, ...info };
    }

    let revoked: boolean;
    try {
      revoked = options.isCertificateRevoked ? await options.isCertificateRevoked(info) : false;
    } catch (error) {
      // Fail closed, but as "server unavailable" so the device retries rather than re-enrolling.
      log.error({ err: error, serialHex: info.serialHex }, 'revocation check failed');
      throw new ConnectRefused(CONNACK.serverUnavailable, 'revocation check failed');
    }
    // Stops a device whose certificate was revoked (compromised key, decommissioned) from reconnecting.
    if (revoked) throw new ConnectRefused(CONNACK.notAuthorized, 'certificate revoked');
    return identity;
  }

  /** A manufacturer-certified device without an operational certificate yet (zero-touch groups). */
  async function identifyBootstrap(client: Client, socket: TLSSocket): Promise<MqttIdentity> {
    const untrusted = new ConnectRefused(
      CONNACK.badUsernameOrPassword,
      `client certificate missing or untrusted: ${String(socket.authorizationError)}`,
    );
    const cert = socket.getPeerX509Certificate();
    if (!cert || !options.authenticateManufacturerChain) throw untrusted;
    const chain: Buffer[] = [];
    for (let link = socket.getPeerCertificate(true); link?.raw; link = link.issuerCertificate) {
      if (chain.some((der) => der.equals(link.raw))) break;
      chain.push(link.raw);
    }
    const deviceId = await options.authenticateManufacturerChain(chain);
    if (deviceId === undefined) throw untrusted;
    if (client.id !== deviceId)
      throw new ConnectRefused(CONNACK.identifierRejected, 'client id must equal the certificate CN');
    return {
      kind: 'bootstrap',
      deviceId,
      serialHex: cert.serialNumber.toLowerCase(),
      commonName: deviceId,
      fingerprintSha256: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
    };
  }

  async function mayPublish(client: Client | null, packet: PublishPacket): Promise<string | null> {
    // null client: a will left behind by a client that is gone; its owner can no longer be checked.
    if (!client) return 'publisher unknown';
    const identity = identities.get(client);
    if (!identity) return 'client not authenticated';
    if (packet.topic.startsWith('$SYS/')) return '$SYS topics are reserved to the broker';
    if (identity.kind === 'service') return null;
    // A device must not plant retained state that every later subscriber would receive.
    if (packet.retain) return 'retained messages are not accepted from devices';
    const parsed = parseTopic(packet.topic);
    if (parsed?.kind === 'siteHeartbeat') {
      // Stops any device from keeping a site looking alive (and hiding that its controller is down).
      const controller =
        identity.kind === 'device' &&
        options.isSiteController !== undefined &&
        (await options.isSiteController(identity.deviceId, parsed.siteId));
      if (!controller) return 'only the site controller may send its heartbeats';
    } else if (!parsed || !DEVICE_PUBLISH_KINDS.has(parsed.kind)) return 'topic not open to devices';
    // A manufacturer certificate only buys the right to ask for an enrollment token.
    if (identity.kind === 'bootstrap' && parsed.kind !== 'enroll')
      return 'bootstrap identities may only enroll';
    const owner = deviceIdOf(parsed);
    // Stops a device from speaking for another device (forged responses, enrollment or telemetry).
    if (owner !== undefined && owner !== identity.deviceId) return 'topic belongs to another device';
    if (options.canPublish && !(await options.canPublish(identity, packet.topic))) return 'refused by policy';
    return null;
  }

  const broker = await Aedes.createBroker({
    // The CN-as-client-id rule needs room for 64-character device ids (MQTT 3.1.1 only promises 23).
    maxClientsIdLength: 64,
    authenticate(client, _username, _password, done) {
      identify(client).then(
        (identity) => {
          identities.set(client, identity);
          log.info(
            { clientId: client.id, kind: identity.kind, serialHex: identity.serialHex },
            'mqtt client authenticated',
          );
          done(null, true);
        },
        (error: unknown) => {
          const refusal =
            error instanceof ConnectRefused
              ? error
              : new ConnectRefused(CONNACK.serverUnavailable, 'authentication failed unexpectedly');
          if (!(error instanceof ConnectRefused)) log.error({ err: error }, 'mqtt authentication error');
          log.warn(
            { clientId: client.id, returnCode: refusal.returnCode, reason: refusal.reason },
            'mqtt connection refused',
          );
          const authError = Object.assign(new Error(refusal.reason), {
            returnCode: refusal.returnCode,
          }) as AuthenticateError;
          done(authError, false);
        },
      );
    },
    // MQTT-3.3.5-2 allows either a positive ack or closing the connection for a refused PUBLISH; aedes
    // only supports closing (an error here drops the message and disconnects the client).
    authorizePublish(client, packet, done) {
      mayPublish(client, packet).then(
        (refusal) => {
          if (refusal === null) return done(null);
          log.warn({ clientId: client?.id, topic: packet.topic, reason: refusal }, 'mqtt publish refused');
          done(new Error(`publish refused: ${refusal}`));
        },
        (error: unknown) => {
          log.error({ err: error, clientId: client?.id, topic: packet.topic }, 'mqtt publish check failed');
          done(new Error('publish check failed'));
        },
      );
    },
    authorizeSubscribe(client, subscription: Subscription, done) {
      const identity = identities.get(client);
      if (identity?.kind === 'service') return done(null, subscription);
      // Devices get exactly their own downstream topics and no wildcards: a wildcard would hand them
      // other devices' challenges and one-time enrollment tokens.
      const allowed =
        (identity?.kind === 'device' &&
          (subscription.topic === topics.attestChallenge(identity.deviceId) ||
            subscription.topic === topics.enrollOtt(identity.deviceId))) ||
        (identity?.kind === 'bootstrap' && subscription.topic === topics.enrollOtt(identity.deviceId));
      if (allowed) return done(null, subscription);
      log.warn({ clientId: client.id, topic: subscription.topic }, 'mqtt subscription refused');
      // A null subscription is answered with SUBACK return code 0x80 (MQTT 3.1.1, 3.9.3).
      done(null, null);
    },
  });

  broker.on('client', (client) => {
    clients.set(client.id, client);
  });
  broker.on('clientDisconnect', (client) => {
    // The same id may already belong to a newer connection that took the session over.
    if (clients.get(client.id) === client) clients.delete(client.id);
    log.debug({ clientId: client.id }, 'mqtt client disconnected');
  });
  broker.on('clientError', (client, error) => {
    log.debug({ clientId: client.id, err: error.message }, 'mqtt client error');
  });
  broker.on('connectionError', (client, error) => {
    log.debug({ clientId: client.id, err: error.message }, 'mqtt connection error');
  });
  // Emitted on persistence failures; undeclared in aedes' types, and fatal if nobody listens.
  (broker as EventEmitter).on('error', (error: unknown) => {
    log.error({ err: error }, 'mqtt broker error');
  });

  const sockets = new Set<Socket>();
  const server = tls.createServer(
    {
      key: options.tls.keyPem,
      cert: options.tls.certPem,
      ca: options.tls.caPems,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (socket) => {
      broker.handle(socket);
    },
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (error, socket) => {
    log.debug({ err: error.message, remoteAddress: socket.remoteAddress }, 'mqtt TLS handshake failed');
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw error;
  }
  server.on('error', (error) => log.error({ err: error }, 'mqtt listener error'));
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, 'embedded MQTT broker listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        // Connections that never completed CONNECT are not aedes clients; end them too.
        for (const socket of sockets) socket.destroy();
        await serverClosed;
        log.info({ port }, 'embedded MQTT broker closed');
      })();
      return closing;
    },
    disconnect(clientId) {
      const client = clients.get(clientId);
      if (!client) return false;
      log.info({ clientId }, 'mqtt client disconnected by the service');
      client.close();
      clients.delete(clientId);
      return true;
    },
    isConnected(clientId) {
      return clients.get(clientId)?.connected === true;
    },
    connectedClients() {
      return clients.size;
    },
  };
}
