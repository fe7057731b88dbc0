import {
  createPrivateKey,
  generateKeyPair as generateKeyPairCallback,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CLOCK_SKEW_MS, randomSerial, signCertificate } from './certificate.builder.js';
import { readCertificateParts } from './certificate.reader.js';
import { createCertificateAuthority, type CertificateAuthority } from './certificate-authority.js';
import { derToPem, pemToDer, sha256Hex } from './encoding.helpers.js';
import { checkCrlUrl, issuingCaProfile, rootCaProfile } from './issuance.profiles.js';
import { PkiError } from './pki.errors.js';
import { canonicalSpki } from './public-key.helpers.js';
import { createSoftwareSigner } from './software.signer.js';

const generateKeyPair = promisify(generateKeyPairCallback);

export interface PkiLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface CertificateAuthorityOptions {
  /** Holds the CA; created 0700 when missing. */
  readonly dir: string;
  /** Encrypts the CA keys at rest (FLEETPROOF_CA_PASSPHRASE). Without it a generated one is stored in `dir`. */
  readonly passphrase?: string;
  readonly logger: PkiLogger;
  /** CRL distribution point written into device and service certificates. */
  readonly crlUrl: string;
  readonly now?: () => Date;
}

export const CA_FILES = {
  rootCertificate: 'root-ca.pem',
  rootKey: 'root-ca-key.pem',
  issuingCertificate: 'issuing-ca.pem',
  issuingKey: 'issuing-ca-key.pem',
  passphrase: 'ca-passphrase',
} as const;

function addYears(date: Date, years: number): Date {
  const result = new Date(date);
  result.setUTCFullYear(result.getUTCFullYear() + years);
  return result;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Temp file, fsync, rename, fsync of the directory: after a crash the file is either absent or
 * complete, never truncated. `wx` refuses to reuse a temp name someone planted.
 */
async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const file = await open(temporary, 'wx', mode);
  try {
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  const directory = await open(dirname(path), 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** Other local users could copy the encrypted keys and attack the passphrase offline. */
async function warnIfShared(path: string, logger: PkiLogger): Promise<void> {
  const { mode } = await stat(path);
  if (mode & 0o077) {
    logger.warn({ path, mode: (mode & 0o777).toString(8) }, 'CA file is accessible to other users');
  }
}

async function resolvePassphrase(dir: string, given: string | undefined, logger: PkiLogger): Promise<string> {
  if (given !== undefined) {
    if (given.length === 0) throw new PkiError('CA_PASSPHRASE_INVALID', 'the CA passphrase is empty');
    return given;
  }
  const path = join(dir, CA_FILES.passphrase);
  const devWarning =
    'CA private keys are protected by a passphrase stored next to them: for development only. ' +
    'Set FLEETPROOF_CA_PASSPHRASE in production.';
  const stored = (await readOptional(path))?.trim();
  if (stored !== undefined) {
    if (stored.length === 0) throw new PkiError('CA_PASSPHRASE_INVALID', `${path} is empty`);
    logger.warn({ path }, devWarning);
    return stored;
  }
  const keysExist = await Promise.all(
    [CA_FILES.rootKey, CA_FILES.issuingKey].map(
      async (name) => (await readOptional(join(dir, name))) !== undefined,
    ),
  );
  // A new passphrase could not open keys encrypted under another one; say what is missing instead.
  if (keysExist.includes(true)) {
    throw new PkiError(
      'CA_PASSPHRASE_MISSING',
      `the CA in ${dir} is encrypted: set FLEETPROOF_CA_PASSPHRASE`,
    );
  }
  const generated = randomBytes(32).toString('base64url');
  await writeFileAtomic(path, `${generated}\n`, 0o600);
  logger.warn({ path }, `GENERATED A CA PASSPHRASE. ${devWarning}`);
  return generated;
}

async function loadKey(path: string, passphrase: string, logger: PkiLogger): Promise<KeyObject> {
  const pem = await readOptional(path);
  if (pem === undefined) {
    throw new PkiError('CA_STORE_CORRUPT', `${path} is missing but its certificate exists`);
  }
  await warnIfShared(path, logger);
  if (!pem.includes('ENCRYPTED PRIVATE KEY')) {
    logger.warn({ path }, 'CA private key is not encrypted at rest');
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (error) {
    const message = `cannot decrypt ${path}: wrong CA passphrase (or a damaged key file)`;
    throw new PkiError('CA_PASSPHRASE_INVALID', message, { cause: error });
  }
}

async function generateCaKey(path: string, curve: 'P-256' | 'P-384', passphrase: string): Promise<KeyObject> {
  const { privateKey } = await generateKeyPair('ec', { namedCurve: curve });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase });
  await writeFileAtomic(path, pem.toString(), 0o600);
  return privateKey;
}

interface StoreContext {
  readonly path: (name: string) => string;
  readonly passphrase: string;
  readonly now: () => Date;
  readonly logger: PkiLogger;
}

async function createRoot(store: StoreContext): Promise<{ der: Buffer; key: KeyObject }> {
  const key = await generateCaKey(store.path(CA_FILES.rootKey), 'P-384', store.passphrase);
  const spki = canonicalSpki(key);
  const profile = rootCaProfile(spki);
  const at = store.now();
  const der = await signCertificate(
    {
      serial: randomSerial(),
      issuer: profile.subject,
      subject: profile.subject,
      notBefore: new Date(at.getTime() - CLOCK_SKEW_MS),
      notAfter: addYears(at, 20),
      spki,
      extensions: profile.extensions,
    },
    createSoftwareSigner(key),
  );
  await writeFileAtomic(store.path(CA_FILES.rootCertificate), derToPem(der, 'CERTIFICATE'), 0o644);
  store.logger.info({ rootFingerprintSha256: sha256Hex(der) }, 'created root CA');
  return { der, key };
}

async function createIssuing(
  store: StoreContext,
  rootDer: Buffer,
  rootKey: KeyObject,
): Promise<{ der: Buffer; key: KeyObject }> {
  const root = readCertificateParts(rootDer);
  const rootCertificate = new X509Certificate(rootDer);
  const rootSpki = canonicalSpki(rootKey);
  if (!rootSpki.equals(canonicalSpki(rootCertificate.publicKey))) {
    throw new PkiError(
      'CA_STORE_CORRUPT',
      `${store.path(CA_FILES.rootKey)} does not match the root CA certificate`,
    );
  }
  const key = await generateCaKey(store.path(CA_FILES.issuingKey), 'P-256', store.passphrase);
  const spki = canonicalSpki(key);
  const profile = issuingCaProfile(spki, rootSpki);
  const at = store.now();
  const der = await signCertificate(
    {
      serial: randomSerial(),
      issuer: root.subject.bytes,
      subject: profile.subject,
      notBefore: new Date(at.getTime() - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(addYears(at, 5).getTime(), Date.parse(rootCertificate.validTo))),
      spki,
      extensions: profile.extensions,
    },
    createSoftwareSigner(rootKey),
  );
  await writeFileAtomic(store.path(CA_FILES.issuingCertificate), derToPem(der, 'CERTIFICATE'), 0o644);
  store.logger.info({}, 'created issuing CA');
  return { der, key };
}

/**
 * Loads the CA from `dir`, creating what is missing. Each CA is committed by its certificate file,
 * written after its key: a crash leaves at most a key without certificate, which the next start
 * replaces. A root that exists is never replaced (devices pin its fingerprint) and an issuing CA is
 * only ever created under it. The root key is decrypted only to certify a new issuing CA, so a running
 * service holds just the issuing key.
 */
export async function loadOrCreateCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const { dir, logger } = options;
  const crlUrl = checkCrlUrl(options.crlUrl);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await warnIfShared(dir, logger);
  const store: StoreContext = {
    path: (name) => join(dir, name),
    passphrase: await resolvePassphrase(dir, options.passphrase, logger),
    now: options.now ?? (() => new Date()),
    logger,
  };

  const rootPem = await readOptional(store.path(CA_FILES.rootCertificate));
  const issuingPem = await readOptional(store.path(CA_FILES.issuingCertificate));
  if (rootPem === undefined && issuingPem !== undefined) {
    throw new PkiError('CA_STORE_CORRUPT', `${dir} has an issuing CA but no root CA certificate`);
  }
  const root = rootPem === undefined ? await createRoot(store) : { der: pemToDer(rootPem, 'CERTIFICATE') };
  const issuing =
    issuingPem === undefined
      ? await createIssuing(
          store,
          root.der,
          'key' in root ? root.key : await loadKey(store.path(CA_FILES.rootKey), store.passphrase, logger),
        )
      : {
          der: pemToDer(issuingPem, 'CERTIFICATE'),
          key: await loadKey(store.path(CA_FILES.issuingKey), store.passphrase, logger),
        };

  const authority = createCertificateAuthority({
    rootDer: root.der,
    issuingDer: issuing.der,
    issuingSigner: createSoftwareSigner(issuing.key),
    crlUrl,
    now: store.now,
  });
  logger.info({ dir, rootFingerprintSha256: authority.rootFingerprintSha256 }, 'certificate authority ready');
  return authority;
}
