import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeCsr,
  pemToDer,
  PkiError,
  sha256Hex,
  toBase64Lines,
  verifyCsr,
  type ParsedCsr,
  type PkiErrorCode,
} from '../../../src/pki/index.js';
import { opensslCsr, opensslOk, scratchDir, type Scratch } from '../../support/openssl.js';

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const P384 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'];
const CHANNEL_BINDING = `tls-exporter:${'0123456789abcdef'.repeat(4)}`;

const challengeConfig = (stringMask: string) => `
[ req ]
prompt = no
string_mask = ${stringMask}
distinguished_name = dn
attributes = attrs
[ dn ]
CN = dev-cp
[ attrs ]
challengePassword = ${CHANNEL_BINDING}
`;

let scratch: Scratch;
const csrs: Record<string, string> = {};

beforeAll(async () => {
  scratch = await scratchDir();
  const specs = {
    p256: { newkey: P256, subject: '/CN=dev-p256' },
    p384: { newkey: P384 },
    ed25519: { newkey: ['-newkey', 'ed25519'] },
    rsa3072: { newkey: ['-newkey', 'rsa:3072'] },
    rsa1024: { newkey: ['-newkey', 'rsa:1024'] },
    sha1: { newkey: P256, digest: 'sha1' },
    secp256k1: { newkey: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'] },
    twoCns: { newkey: P256, subject: '/CN=dev-a/CN=dev-b' },
    challengeUtf8: { newkey: P256, config: challengeConfig('utf8only') },
    challengePrintable: { newkey: P256, config: challengeConfig('nombstr') },
    greedy: {
      newkey: P256,
      addext: [
        'basicConstraints=critical,CA:TRUE',
        'subjectAltName=DNS:evil.example,URI:urn:fleetproof:service',
      ],
    },
  };
  await Promise.all(
    Object.entries(specs).map(async ([name, spec]) => {
      csrs[name] = (await opensslCsr(scratch, name, spec)).csrPem;
    }),
  );
});
afterAll(() => scratch.remove());

const csr = (name: string): string => {
  const pem = csrs[name];
  if (!pem) throw new Error(`no CSR ${name}`);
  return pem;
};

function errorCode(action: () => unknown): PkiErrorCode | 'no error' {
  try {
    action();
    return 'no error';
  } catch (error) {
    if (error instanceof PkiError) return error.code;
    throw error;
  }
}

/** SHA-256 of the SPKI as OpenSSL prints it for the request. */
async function opensslSpkiSha256(pem: string): Promise<string> {
  const publicKeyPem = await opensslOk(['req', '-noout', '-pubkey'], pem);
  return sha256Hex(pemToDer(publicKeyPem, 'PUBLIC KEY'));
}

describe('decodeCsr', () => {
  it('reads PEM, raw DER and base64 DER with line breaks alike', async () => {
    const pem = csr('p256');
    const der = pemToDer(pem, 'CERTIFICATE REQUEST');
    const decoded = [
      decodeCsr(pem),
      decodeCsr(Buffer.from(pem)),
      decodeCsr(der),
      decodeCsr(der.toString('base64')),
      decodeCsr(Buffer.from(toBase64Lines(der, 64, '\r\n'))),
      decodeCsr(` ${toBase64Lines(der, 76)}\n`),
    ];
    const expectedSpki = await opensslSpkiSha256(pem);
    for (const parsed of decoded) {
      expect(parsed.der.equals(der)).toBe(true);
      expect(parsed.commonName).toBe('dev-p256');
      expect(parsed.key.kind).toBe('ec-p256');
      expect(parsed.signatureAlgorithm.name).toBe('ecdsa-with-SHA256');
      expect(parsed.spkiSha256).toBe(expectedSpki);
    }
  });

  it('refuses what is not a certificate request', () => {
    const der = pemToDer(csr('p256'), 'CERTIFICATE REQUEST');
    expect(errorCode(() => decodeCsr('not base64 at all!'))).toBe('CSR_UNDECODABLE');
    expect(errorCode(() => decodeCsr(der.subarray(0, der.length - 5)))).toBe('CSR_UNDECODABLE');
    expect(errorCode(() => decodeCsr(Buffer.concat([der, Buffer.from([0])])))).toBe('CSR_UNDECODABLE');
    expect(errorCode(() => decodeCsr(csr('p256').replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE')))).toBe(
      'CSR_UNDECODABLE',
    );
    expect(errorCode(() => decodeCsr(Buffer.from([0x30, 0x80, 0x00, 0x00])))).toBe('CSR_UNDECODABLE');
  });

  it('refuses a subject with two CNs', () => {
    expect(errorCode(() => decodeCsr(csr('twoCns')))).toBe('CSR_AMBIGUOUS_SUBJECT');
  });

  it('extracts the challengePassword as UTF8String or PrintableString', () => {
    expect(decodeCsr(csr('challengeUtf8')).challengePassword).toBe(CHANNEL_BINDING);
    expect(decodeCsr(csr('challengePrintable')).challengePassword).toBe(CHANNEL_BINDING);
    expect(decodeCsr(csr('p256')).challengePassword).toBeUndefined();
  });

  it('reports requested extensions without acting on them', () => {
    const parsed = decodeCsr(csr('greedy'));
    const basicConstraints = parsed.requestedExtensions.find((extension) => extension.oid === '2.5.29.19');
    expect(basicConstraints?.critical).toBe(true);
    expect(parsed.requestedExtensions.map((extension) => extension.oid)).toContain('2.5.29.17');
  });

  it('names a key by its value, not its encoding (compressed EC point)', async () => {
    const { keyPath } = await opensslCsr(scratch, 'uncompressed', { newkey: P256 });
    const compressedKey = `${scratch.dir}/compressed.key`;
    await opensslOk(['ec', '-in', keyPath, '-conv_form', 'compressed', '-out', compressedKey]);
    const uncompressedCsr = await opensslOk(['req', '-new', '-key', keyPath, '-subj', '/CN=u']);
    const compressedCsr = await opensslOk(['req', '-new', '-key', compressedKey, '-subj', '/CN=c']);
    const asn1 = await opensslOk(['asn1parse'], compressedCsr);
    expect(asn1).toMatch(/l= +34 prim: BIT STRING/);

    const compressed = decodeCsr(compressedCsr);
    verifyCsr(compressed);
    expect(compressed.spkiSha256).toBe(decodeCsr(uncompressedCsr).spkiSha256);
  });
});

describe('verifyCsr', () => {
  it.each([
    ['p256', 'ec-p256'],
    ['p384', 'ec-p384'],
    ['ed25519', 'ed25519'],
    ['rsa3072', 'rsa'],
  ])('accepts an OpenSSL %s request', (name, kind) => {
    const parsed: ParsedCsr = decodeCsr(csr(name));
    expect(parsed.key.kind).toBe(kind);
    expect(errorCode(() => verifyCsr(parsed))).toBe('no error');
    if (parsed.key.kind === 'rsa') expect(parsed.key.modulusBits).toBe(3072);
  });

  it('refuses RSA-1024', () => {
    expect(errorCode(() => verifyCsr(decodeCsr(csr('rsa1024'))))).toBe('CSR_WEAK_KEY');
  });

  it('refuses a SHA-1 signature', () => {
    const parsed = decodeCsr(csr('sha1'));
    expect(parsed.signatureAlgorithm.name).toBe('ecdsa-with-SHA1');
    expect(errorCode(() => verifyCsr(parsed))).toBe('CSR_WEAK_SIGNATURE_ALGORITHM');
  });

  it('refuses curves other than P-256 and P-384', () => {
    const parsed = decodeCsr(csr('secp256k1'));
    expect(parsed.key.kind).toBe('other');
    expect(errorCode(() => verifyCsr(parsed))).toBe('CSR_UNSUPPORTED_KEY');
  });

  it('refuses a tampered signature and a tampered subject', () => {
    const der = pemToDer(csr('p256'), 'CERTIFICATE REQUEST');
    const badSignature = Buffer.from(der);
    badSignature[badSignature.length - 1] = (badSignature.at(-1) ?? 0) ^ 0x01;
    expect(errorCode(() => verifyCsr(decodeCsr(badSignature)))).toBe('CSR_BAD_SIGNATURE');

    const cnAt = der.indexOf(Buffer.from('dev-p256'));
    expect(cnAt).toBeGreaterThan(0);
    const badSubject = Buffer.from(der);
    badSubject[cnAt] = 'x'.charCodeAt(0);
    const parsed = decodeCsr(badSubject);
    expect(parsed.commonName).toBe('xev-p256');
    expect(errorCode(() => verifyCsr(parsed))).toBe('CSR_BAD_SIGNATURE');
  });
});
