import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import type { ChannelBinding } from '../enrollment/enrollment.service.js';
import { CSR_ATTRIBUTES_DER, certificatesPkcs7, toBase64Lines } from '../pki/index.js';
import type { Services } from '../services.js';
import { clientAddress } from './auth.js';
import { mediaType, readBody } from './body.js';
import { HttpProblem, withProblems } from './errors.js';
import type { Router, RouteRequest } from './router.js';

/** RFC 7030 4.2.1: a CSR is small; anything larger is refused before it is read. */
const CSR_LIMIT = 64 * 1024;

/**
 * RFC 7030 Enrollment over Secure Transport, on the HTTPS listener only, plus the runbook's alias
 * `/api/v1/cps/est/enroll` and the CRL. Authentication is read here (OTT from Bearer or Basic, TLS
 * client certificate); what it entitles to is decided by EnrollmentService.
 */
export function addEstRoutes(router: Router, services: Services): void {
  const est = (handler: (request: RouteRequest) => Promise<void>) =>
    withProblems<RouteRequest>(async (request) => {
      // RFC 7030 3.2.3: EST runs over TLS; tokens and CSRs must never cross the wire in clear text.
      if (!request.secure) throw new HttpProblem(403, 'https-required', 'EST is served over HTTPS only');
      await handler(request);
    });

  router.add(
    'GET',
    '/.well-known/est/cacerts',
    est(({ res }) => {
      sendBase64(res, 'application/pkcs7-mime', services.ca.cacertsPkcs7());
      return Promise.resolve();
    }),
  );

  router.add(
    'GET',
    '/.well-known/est/csrattrs',
    est(({ res }) => {
      sendBase64(res, 'application/csrattrs', CSR_ATTRIBUTES_DER);
      return Promise.resolve();
    }),
  );

  const simpleEnroll = est(async ({ raw, res }) => {
    const csr = await readCsr(raw);
    const credentials = enrollmentCredentials(raw);
    const presentedChain = peerChain(raw);
    const em = services.database.orm.em.fork();
    const common = { csr, channelBinding: channelBinding(raw), clientAddress: clientAddress(raw) };
    // Without an OTT, a manufacturer (IDevID) client certificate is the credential (zero-touch groups).
    const result =
      credentials.ott === undefined && presentedChain.length > 0
        ? await services.enrollment.enrollWithManufacturerChain(em, { ...common, presentedChain })
        : await services.enrollment.enroll(em, {
            ...common,
            ott: credentials.ott,
            claimedDeviceId: credentials.user,
          });
    sendBase64(res, 'application/pkcs7-mime; smime-type=certs-only', certificatesPkcs7([result.der]));
  });
  router.add('POST', '/.well-known/est/simpleenroll', simpleEnroll);
  router.add('POST', '/api/v1/cps/est/enroll', simpleEnroll);

  router.add(
    'POST',
    '/.well-known/est/simplereenroll',
    est(async ({ raw, res }) => {
      const csr = await readCsr(raw);
      const result = await services.enrollment.reenroll(services.database.orm.em.fork(), {
        clientCertificate: peerChain(raw)[0],
        csr,
        channelBinding: channelBinding(raw),
        clientAddress: clientAddress(raw),
      });
      sendBase64(res, 'application/pkcs7-mime; smime-type=certs-only', certificatesPkcs7([result.der]));
    }),
  );

  // Relying parties fetch the CRL over plain HTTP too (RFC 5280 4.2.1.13): it is signed, not secret.
  router.add(
    'GET',
    '/api/v1/cps/crl',
    withProblems<RouteRequest>(async ({ res }) => {
      const crl = await services.crl.current(services.database.orm.em.fork());
      res.writeHead(200, {
        'content-type': 'application/pkix-crl',
        'content-length': crl.der.length,
        'cache-control': `public, max-age=${Math.max(0, Math.floor((crl.nextUpdate.getTime() - Date.now()) / 1000) - 3600)}`,
        'last-modified': crl.thisUpdate.toUTCString(),
      });
      res.end(crl.der);
    }),
  );
}

async function readCsr(req: IncomingMessage): Promise<Buffer> {
  if (mediaType(req) !== 'application/pkcs10') {
    throw new HttpProblem(415, 'unsupported-media-type', 'Send the CSR as Content-Type: application/pkcs10');
  }
  return readBody(req, CSR_LIMIT);
}

/** RFC 7030 3.2.3: Bearer <ott>, or Basic with user = device id and password = ott (stock EST clients). */
function enrollmentCredentials(req: IncomingMessage): { ott: string | undefined; user: string | undefined } {
  const header = req.headers.authorization ?? '';
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return { ott: bearer[1], user: undefined };
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { user: decoded.slice(0, colon), ott: decoded.slice(colon + 1) };
  }
  return { ott: undefined, user: undefined };
}

/** The certificates the TLS client presented, leaf first (empty without a client certificate). */
function peerChain(req: IncomingMessage): Buffer[] {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted) return [];
  const chain: Buffer[] = [];
  let current: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (current?.raw && !chain.some((der) => der.equals(current!.raw))) {
    chain.push(current.raw);
    current = current.issuerCertificate;
  }
  return chain;
}

/**
 * The binding of this TLS session: tls-exporter (RFC 9266) on TLS 1.3, tls-unique (RFC 5929, the
 * first Finished message, the client's on a full handshake) on TLS 1.2.
 */
function channelBinding(req: IncomingMessage): ChannelBinding | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted) return undefined;
  if (socket.getProtocol() === 'TLSv1.3') {
    return {
      type: 'tls-exporter',
      value: socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)),
    };
  }
  const finished = socket.isSessionReused() ? socket.getFinished() : socket.getPeerFinished();
  return finished ? { type: 'tls-unique', value: finished } : undefined;
}

/** RFC 7030 4.1.3/4.2.3: base64 with Content-Transfer-Encoding, wrapped at 64 (OpenSSL needs lines). */
function sendBase64(res: ServerResponse, contentType: string, der: Buffer): void {
  const body = toBase64Lines(der, 64, '\r\n');
  res.writeHead(200, {
    'content-type': contentType,
    'content-transfer-encoding': 'base64',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
