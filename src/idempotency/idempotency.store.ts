import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Clock } from '../shared/clock.js';
import type { Tx } from '../shared/transaction.js';

/** Who asked, under which key, for what: a key is scoped to one token. */
export interface IdempotentRequest {
  tokenId: string;
  key: string;
  /** Hash of the request (document, operation name, variables): one key, one request. */
  fingerprint: string;
}

export type StoredRequest =
  | { state: 'running'; fingerprint: string }
  /** Finished; `response` is null when the first request's response could not be kept. */
  | { state: 'finished'; fingerprint: string; response: unknown };

/** Expired keys removed per finished request: the table stays bounded without a timer of its own. */
const SWEEP_BATCH = 100;

/**
 * Idempotency keys in the database, so every instance sees the same keys. A key is claimed in the
 * transaction of the change it guards (see TransactionRunner.enlist), so the change and the key
 * commit together or not at all; the response is attached when the request finishes.
 *
 * Responses can carry secrets shown once (a new API token, a one-time enrollment token), so they
 * are sealed with AES-256-GCM under a key derived from the caller's own bearer secret, which the
 * service never stores: the table alone reveals no response.
 */
export class IdempotencyStore {
  constructor(
    private readonly clock: Clock,
    private readonly ttlSeconds: number,
  ) {}

  async find(
    em: EntityManager,
    tokenId: string,
    key: string,
    credential: string,
  ): Promise<StoredRequest | null> {
    const [row] = await em
      .getConnection()
      .execute<{ fingerprint: string; completed_at: Date | null; response: Buffer | null }[]>(
        `select fingerprint, completed_at, response from idempotency_key
       where token_id = ? and key = ? and expires_at > ?`,
        [tokenId, key, this.clock.now()],
      );
    if (!row) return null;
    if (row.completed_at === null) return { state: 'running', fingerprint: row.fingerprint };
    return {
      state: 'finished',
      fingerprint: row.fingerprint,
      response: row.response ? unseal(row.response, credential, tokenId, key) : null,
    };
  }

  /**
   * Takes the key inside `tx`; false when another request holds it (the caller must then roll its
   * change back). Waits, in PostgreSQL, for a concurrent holder to commit or roll back first.
   */
  async claim(tx: Tx, request: IdempotentRequest): Promise<boolean> {
    const now = this.clock.now();
    const claimed = await tx.em.getConnection().execute<{ key: string }[]>(
      `insert into idempotency_key (token_id, key, fingerprint, created_at, expires_at)
       values (?, ?, ?, ?, ?)
       on conflict (token_id, key) do update set
         fingerprint = excluded.fingerprint, created_at = excluded.created_at,
         expires_at = excluded.expires_at, completed_at = null, response = null
       where idempotency_key.expires_at <= excluded.created_at
       returning key`,
      [
        request.tokenId,
        request.key,
        request.fingerprint,
        now,
        new Date(now.getTime() + this.ttlSeconds * 1000),
      ],
      'all',
      tx.em.getTransactionContext(),
    );
    return claimed.length === 1;
  }

  /** Marks the request finished; `response` null says it happened but its response is not kept. */
  async finish(
    em: EntityManager,
    request: IdempotentRequest,
    response: unknown,
    credential: string,
  ): Promise<void> {
    const now = this.clock.now();
    const connection = em.getConnection();
    await connection.execute(
      `update idempotency_key set completed_at = ?, response = ? where token_id = ? and key = ?`,
      [
        now,
        response === null ? null : seal(response, credential, request.tokenId, request.key),
        request.tokenId,
        request.key,
      ],
    );
    // Here, after the change committed, rather than in its transaction: no lock taken there for this.
    await connection.execute(
      `delete from idempotency_key where ctid = any(array(
         select ctid from idempotency_key where expires_at <= ? order by expires_at limit ${SWEEP_BATCH}))`,
      [now],
    );
  }
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function sealingKey(credential: string, tokenId: string, key: string): Buffer {
  return Buffer.from(hkdfSync('sha256', credential, tokenId, `fleetproof idempotent response ${key}`, 32));
}

function seal(value: unknown, credential: string, tokenId: string, key: string): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(credential, tokenId, key), nonce);
  const sealed = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return Buffer.concat([nonce, cipher.getAuthTag(), sealed]);
}

function unseal(box: Buffer, credential: string, tokenId: string, key: string): unknown {
  const decipher = createDecipheriv(
    'aes-256-gcm',
    sealingKey(credential, tokenId, key),
    box.subarray(0, NONCE_BYTES),
  );
  decipher.setAuthTag(box.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
  const text = Buffer.concat([decipher.update(box.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]);
  return JSON.parse(text.toString('utf8')) as unknown;
}
