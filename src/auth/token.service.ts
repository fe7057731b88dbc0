import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import type { Clock } from '../shared/clock.js';
import type { TransactionRunner } from '../shared/transaction.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import { Site } from '../sites/site.entity.js';
import { ApiToken, ROLES, type Role } from './api-token.entity.js';

/** Who is calling: resolved from a bearer token once per request or WebSocket connection. */
export interface Viewer {
  tokenId: string;
  name: string;
  role: Role;
  expiresAt: Date | null;
  /** Set only for `site` tokens: the site they speak for. */
  siteId: string | null;
}

const TOKEN_PREFIX = 'fpt_';

/** How a token-holder appears in the audit trail: the name for people, the id to be unambiguous. */
export function actorOf(viewer: Viewer): string {
  return `token:${viewer.name}/${viewer.tokenId}`;
}

// 256-bit random secrets: a plain SHA-256 is enough to store them (no dictionary to attack).
function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

export class TokenService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  /** Creates a token and returns its secret, which is shown once and never stored. */
  async create(
    em: EntityManager,
    input: { name: string; role: string; siteId?: string | null; expiresAt?: Date; actor: string },
  ): Promise<{ token: string; record: ApiToken }> {
    const name = input.name.trim();
    if (!name || name.length > 200) throw new ValidationError('name', 'name must be 1-200 characters');
    if (!isRole(input.role)) throw new ValidationError('role', `role must be one of ${ROLES.join(', ')}`);
    const role = input.role;
    const siteId = input.siteId ?? null;
    // A site token without its site would be a credential whose reach nobody can tell.
    if ((role === 'site') !== (siteId !== null)) {
      throw new ValidationError('site', 'a site is required for the site role, and only for it');
    }
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    return this.transactions.run(em, async (tx) => {
      if (siteId !== null && !(await tx.em.findOne(Site, { id: siteId }, { fields: ['id'] }))) {
        throw new ValidationError('site', `site ${siteId} is not defined`);
      }
      const record = new ApiToken();
      record.id = randomUUID();
      record.name = name;
      record.role = role;
      record.tokenHash = hashToken(token);
      record.createdAt = this.clock.now();
      record.expiresAt = input.expiresAt ?? null;
      record.siteId = siteId;
      tx.em.persist(record);
      await this.audit.record(tx, {
        actor: input.actor,
        action: 'token.created',
        subject: `token:${record.id}`,
        details: {
          name,
          role,
          expiresAt: record.expiresAt?.toISOString() ?? null,
          ...(siteId !== null ? { siteId } : {}),
        },
      });
      return { token, record };
    });
  }

  /** Revokes a token at once; open subscriptions notice it on their next validity check. */
  async revoke(em: EntityManager, input: { id: string; actor: string }): Promise<ApiToken> {
    return this.transactions.run(em, async (tx) => {
      const record = await tx.em.findOne(ApiToken, { id: input.id });
      if (!record) throw new NotFoundError(`token ${input.id} not found`);
      if (record.revokedAt === null) {
        record.revokedAt = this.clock.now();
        await this.audit.record(tx, {
          actor: input.actor,
          action: 'token.revoked',
          subject: `token:${record.id}`,
          details: { name: record.name, role: record.role },
        });
      }
      return record;
    });
  }

  /** Resolves a bearer secret; null when unknown, revoked or expired (callers do not learn which). */
  async authenticate(em: EntityManager, token: string): Promise<Viewer | null> {
    if (!token.startsWith(TOKEN_PREFIX)) return null;
    const record = await em.findOne(ApiToken, { tokenHash: hashToken(token) });
    if (!record || !this.isUsable(record)) return null;
    return {
      tokenId: record.id,
      name: record.name,
      role: record.role,
      expiresAt: record.expiresAt,
      siteId: record.siteId,
    };
  }

  /** Which of these tokens are still valid now, in one statement (for many long-lived connections). */
  async usableTokenIds(em: EntityManager, tokenIds: string[]): Promise<Set<string>> {
    const records = await em.find(ApiToken, { id: { $in: tokenIds } });
    return new Set(records.filter((record) => this.isUsable(record)).map((record) => record.id));
  }

  private isUsable(record: ApiToken): boolean {
    const now = this.clock.now();
    return record.revokedAt === null && (record.expiresAt === null || record.expiresAt > now);
  }
}

/** Reads `Bearer <secret>` from an Authorization header value (case-insensitive scheme). */
export function bearerFrom(header: string | null | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}
