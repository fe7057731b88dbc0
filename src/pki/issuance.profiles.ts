import { isIP } from 'node:net';
import { encodeName } from './name.codec.js';
import { OID } from './oid.constants.js';
import { PkiError } from './pki.errors.js';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  crlDistributionPointsExtension,
  extendedKeyUsageExtension,
  keyIdentifier,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  type GeneralName,
} from './x509-extensions.encoder.js';

/**
 * What each kind of certificate contains. The profile alone decides subject and extensions: nothing
 * requested in a CSR (CA:true, keyCertSign, extra SANs) is ever copied, so a device cannot ask its way
 * to a CA certificate or to another identity.
 */

export const SERVICE_COMMON_NAME = 'fleetproof-service';
/** The broker recognises the service by this SAN; no device input can produce it (see deviceProfile). */
export const SERVICE_URI = 'urn:fleetproof:service';

const ORGANIZATION = 'fleetproof';
// MQTT pattern ACLs substitute the CN for %u: '/', '+' and '#' in it would widen a device's topics.
const identifierPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const cdiCommitmentPattern = /^sha256:[0-9a-f]{64}$/;
const dnsNamePattern =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function invalid(message: string): PkiError {
  return new PkiError('INVALID_INPUT', message);
}

function checkIdentifier(what: string, value: string): string {
  if (!identifierPattern.test(value)) {
    throw invalid(`${what} must be 1-64 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit`);
  }
  return value;
}

function ipv6Bytes(ip: string): Buffer {
  let text = ip;
  const embedded = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (embedded) {
    const [a = 0, b = 0, c = 0, d = 0] = embedded.slice(1).map(Number);
    text = `${text.slice(0, embedded.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((group, i) =>
    bytes.writeUInt16BE(parseInt(group, 16), i * 2),
  );
  return bytes;
}

/** iPAddress GeneralName: 4 or 16 octets in network order (RFC 5280 4.2.1.6). */
function ipAddressName(ip: string): GeneralName {
  const version = ip.includes('%') ? 0 : isIP(ip);
  if (version === 4) return { type: 'ip', bytes: Buffer.from(ip.split('.').map(Number)) };
  if (version === 6) return { type: 'ip', bytes: ipv6Bytes(ip) };
  throw invalid(`not an IP address: ${ip}`);
}

function dnsName(name: string): GeneralName {
  if (!dnsNamePattern.test(name)) throw invalid(`not a DNS name: ${name}`);
  return { type: 'dns', value: name };
}

export function checkCrlUrl(crlUrl: string): string {
  let protocol: string;
  try {
    protocol = new URL(crlUrl).protocol;
  } catch {
    throw invalid(`crlUrl is not a URL: ${crlUrl}`);
  }
  // The URI is an IA5String: non-ASCII would not survive encoding.
  if (!['http:', 'https:'].includes(protocol) || !/^[\x21-\x7e]+$/.test(crlUrl)) {
    throw invalid('crlUrl must be an ASCII http(s) URL');
  }
  return crlUrl;
}

export interface ProfileOutput {
  readonly subject: Buffer;
  readonly extensions: readonly Buffer[];
}

export function rootCaProfile(spki: Buffer): ProfileOutput {
  return {
    subject: encodeName({ organization: ORGANIZATION, commonName: 'fleetproof Root CA' }),
    extensions: [
      // pathLen 1: the root may certify issuing CAs, which themselves may only certify leaves.
      basicConstraintsExtension(true, 1),
      keyUsageExtension(['keyCertSign', 'cRLSign']),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
    ],
  };
}

export function issuingCaProfile(spki: Buffer, rootSpki: Buffer): ProfileOutput {
  return {
    subject: encodeName({ organization: ORGANIZATION, commonName: 'fleetproof Issuing CA' }),
    extensions: [
      // pathLen 0: a CA certificate issued by mistake below this one would not validate.
      basicConstraintsExtension(true, 0),
      keyUsageExtension(['keyCertSign', 'cRLSign']),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
      authorityKeyIdentifierExtension(keyIdentifier(rootSpki)),
    ],
  };
}

export interface LeafProfiles {
  device(spki: Buffer, deviceId: string, cdiCommitment: string): ProfileOutput;
  server(
    spki: Buffer,
    commonName: string,
    dnsNames: readonly string[],
    ipAddresses: readonly string[],
  ): ProfileOutput;
  serviceClient(spki: Buffer, instanceName: string): ProfileOutput;
}

/** Leaf profiles under one issuing CA; the extensions that never vary are encoded once. */
export function createLeafProfiles(issuingSpki: Buffer, crlUrl: string): LeafProfiles {
  const leafConstraints = basicConstraintsExtension(false);
  const signingOnly = keyUsageExtension(['digitalSignature']);
  const authorityKeyId = authorityKeyIdentifierExtension(keyIdentifier(issuingSpki));
  const crlDistributionPoint = crlDistributionPointsExtension(checkCrlUrl(crlUrl));
  const clientAuth = extendedKeyUsageExtension([OID.clientAuth]);
  const serverAuth = extendedKeyUsageExtension([OID.serverAuth]);
  const serviceName = subjectAltNameExtension([{ type: 'uri', value: SERVICE_URI }]);

  return {
    device(spki, deviceId, cdiCommitment) {
      checkIdentifier('deviceId', deviceId);
      // A device called like the service would get the service's CN and pass CN-keyed broker ACLs.
      if (deviceId === SERVICE_COMMON_NAME) throw invalid(`deviceId ${SERVICE_COMMON_NAME} is reserved`);
      if (!cdiCommitmentPattern.test(cdiCommitment)) {
        throw invalid("cdiCommitment must be 'sha256:<64 lowercase hex>'");
      }
      return {
        subject: encodeName({ commonName: deviceId }),
        extensions: [
          leafConstraints,
          signingOnly,
          clientAuth,
          subjectKeyIdentifierExtension(keyIdentifier(spki)),
          authorityKeyId,
          subjectAltNameExtension([{ type: 'uri', value: `urn:dice:cdi:${cdiCommitment}` }]),
          crlDistributionPoint,
        ],
      };
    },

    server(spki, commonName, dnsNames, ipAddresses) {
      if (commonName.length < 1 || commonName.length > 64) {
        throw invalid('commonName must be 1-64 characters');
      }
      const names = [...dnsNames.map(dnsName), ...ipAddresses.map(ipAddressName)];
      if (names.length === 0) throw invalid('a server certificate needs at least one DNS name or IP address');
      return {
        subject: encodeName({ organization: ORGANIZATION, commonName }),
        extensions: [
          leafConstraints,
          signingOnly,
          serverAuth,
          subjectKeyIdentifierExtension(keyIdentifier(spki)),
          authorityKeyId,
          subjectAltNameExtension(names),
          // No CRL distribution point: the CRL is served by this very server, so a client fetching
          // it to validate the server would have to trust the server first.
        ],
      };
    },

    serviceClient(spki, instanceName) {
      return {
        subject: encodeName({
          organization: ORGANIZATION,
          organizationalUnit: checkIdentifier('instanceName', instanceName),
          commonName: SERVICE_COMMON_NAME,
        }),
        extensions: [
          leafConstraints,
          signingOnly,
          clientAuth,
          subjectKeyIdentifierExtension(keyIdentifier(spki)),
          authorityKeyId,
          serviceName,
          crlDistributionPoint,
        ],
      };
    },
  };
}
