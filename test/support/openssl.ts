import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OpensslResult {
  /** The exit code; null when a signal ended it. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the real `openssl` binary (the independent client of every standard we speak) with stdin
 * from `input` or /dev/null, so interactive tools like s_client end instead of waiting. It resolves
 * with the exit code instead of throwing, so tests can assert on refusals.
 */
export function openssl(args: readonly string[], input?: string | Buffer): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('latin1')));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) {
      // A command that reads a file instead may exit before taking stdin; its exit code tells the story.
      child.stdin!.once('error', () => undefined);
      child.stdin!.end(input);
    }
  });
}

/** Like `openssl`, but a non-zero exit fails the test with OpenSSL's own message. */
export async function opensslOk(args: readonly string[], input?: string | Buffer): Promise<string> {
  const result = await openssl(args, input);
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

export async function opensslBinary(args: readonly string[], input?: string | Buffer): Promise<Buffer> {
  return Buffer.from(await opensslOk(args, input), 'latin1');
}

export interface Scratch {
  readonly dir: string;
  write(name: string, data: string | Buffer): Promise<string>;
  remove(): Promise<void>;
}

export async function scratchDir(prefix = 'fleetproof-pki-'): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return {
    dir,
    async write(name, data) {
      const path = join(dir, name);
      await writeFile(path, data);
      return path;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface CsrOptions {
  /** `openssl req -newkey` argument, e.g. `ec -pkeyopt ec_paramgen_curve:P-256`, `rsa:3072`, `ed25519`. */
  readonly newkey: readonly string[];
  readonly subject?: string;
  readonly digest?: string;
  readonly addext?: readonly string[];
  readonly config?: string;
}

/** A CSR (PEM) and its key, made by `openssl req` into `scratch`. */
export async function opensslCsr(
  scratch: Scratch,
  name: string,
  options: CsrOptions,
): Promise<{ csrPem: string; keyPath: string }> {
  const keyPath = join(scratch.dir, `${name}.key`);
  const args = ['req', '-new', '-nodes', '-keyout', keyPath, ...options.newkey];
  if (options.config) args.push('-config', await scratch.write(`${name}.cnf`, options.config));
  else args.push('-subj', options.subject ?? `/CN=${name}`);
  if (options.digest) args.push(`-${options.digest}`);
  for (const extension of options.addext ?? []) args.push('-addext', extension);
  return { csrPem: await opensslOk(args), keyPath };
}
