import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrationsList } from '../../../migrations/index.js';
import { GENESIS_HASH, auditHash } from '../../../src/audit/audit-chain.js';
import { AuditService, verifyAuditChain } from '../../../src/audit/audit.service.js';
import { ormOptions } from '../../../src/db/database.js';
import { systemClock } from '../../../src/shared/clock.js';
import { TransactionRunner } from '../../../src/shared/transaction.js';
import { freshDatabaseUrl } from '../../support/database.js';
import { withDatabase } from '../../support/global-setup.js';

// Two ORMs with their own pools stand for two service instances sharing one database.
let instances: MikroORM[];
const audit = new AuditService(systemClock);
const transactions = new TransactionRunner({ publish: () => {} });

beforeAll(async () => {
  const url = await freshDatabaseUrl();
  instances = [await MikroORM.init(ormOptions(url)), await MikroORM.init(ormOptions(url))];
});

afterAll(async () => {
  await Promise.all(instances.map((orm) => orm.close(true)));
});

const append = (orm: MikroORM, index: number) =>
  transactions.run(orm.em.fork(), (tx) =>
    audit.record(tx, { actor: 'test', action: 'test.appended', subject: `n:${index}`, details: { index } }),
  );

const appendThree = (orm: MikroORM, index: number) =>
  transactions.run(orm.em.fork(), (tx) =>
    audit.recordMany(
      tx,
      [0, 1, 2].map((part) => ({ actor: 'test', action: 'test.batch', subject: `n:${index}.${part}` })),
    ),
  );

describe('the audit chain head', () => {
  it('orders concurrent appends of several instances into one gap-free chain that verifies', async () => {
    // 40 single appends and 10 batches of three, half on each instance.
    const appended = await Promise.all(
      Array.from({ length: 50 }, (_, index) =>
        index % 5 === 0 ? appendThree(instances[index % 2]!, index) : append(instances[index % 2]!, index),
      ),
    );
    const events = appended.flat();
    expect(events.map((event) => Number(event.seq)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 70 }, (_, index) => index + 1),
    );
    // A batch's events are consecutive links.
    for (const batch of appended) {
      if (!Array.isArray(batch)) continue;
      expect(batch.map((event) => Number(event.seq) - Number(batch[0]!.seq))).toEqual([0, 1, 2]);
      expect(batch[1]!.prevHash).toBe(batch[0]!.hash);
    }
    // A rolled-back append takes its head move with it: no gap, no dangling link.
    await expect(
      transactions.run(instances[0]!.em.fork(), async (tx) => {
        await audit.record(tx, { actor: 'test', action: 'test.rolled-back', subject: 'n:x' });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    const last = await append(instances[1]!, 70);
    expect(last.seq).toBe('71');
    expect(await verifyAuditChain(instances[0]!.em.fork())).toEqual({ ok: true, checked: 71 });
  });
});

describe('AuditService.record outside a transaction', () => {
  it('is refused before anything is written: the change and its event would commit apart', async () => {
    const orm = instances[0]!;
    const before = await verifyAuditChain(orm.em.fork());
    await expect(
      transactions.single(orm.em.fork(), (tx) =>
        audit.record(tx, { actor: 'test', action: 'test.autocommit', subject: 'n:autocommit' }),
      ),
    ).rejects.toThrow('audit events are appended in the transaction of the change they record');
    expect(await verifyAuditChain(orm.em.fork())).toEqual(before);
  });
});

describe('AuditService.recordInStatement', () => {
  it('appends the events with the change in one statement, and none when nothing changed', async () => {
    const orm = instances[0]!;
    const published: string[] = [];
    const runner = new TransactionRunner({ publish: (topic) => published.push(topic) });
    const change = (key: string, happens: boolean) =>
      runner.single(orm.em.fork(), (tx) =>
        audit.recordInStatement<{ key: string }>(
          tx,
          {
            ctes: `changed as (
              insert into rate_limit_window (key, window_start, count) select ?, now(), 1 where ?
              returning key)`,
            when: 'changed',
            select: 'select key from changed',
            params: [key, happens],
          },
          [{ actor: 'test', action: 'test.changed', subject: key }],
        ),
      );
    const before = await verifyAuditChain(orm.em.fork());
    expect(await change('unchanged', false)).toEqual([]);
    expect(published).toEqual([]);
    expect(await change('changed', true)).toEqual([{ key: 'changed' }]);
    expect(published).toEqual(['audit.recorded']);
    const after = await verifyAuditChain(orm.em.fork());
    expect(after).toEqual({ ok: true, checked: before.checked + 1 });
  });
});

describe('the chain head migration', () => {
  it.runIf(inject('databaseMode') === 'postgresql')(
    'seeds the head from an existing chain, which new appends then continue',
    async () => {
      const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await admin.connect();
      const name = `fp_head_${process.pid}_${Date.now()}`;
      await admin.query(`create database ${name}`);
      const orm = await MikroORM.init(ormOptions(withDatabase(process.env.DATABASE_URL!, name)));
      try {
        const headMigration = migrationsList.findIndex((m) => m.name.endsWith('_audit_chain_head'));
        await orm.getMigrator().up({ to: migrationsList[headMigration - 1]!.name });
        // Three events as the previous version wrote them.
        let prevHash = GENESIS_HASH;
        for (const seq of ['1', '2', '3']) {
          const content = {
            seq,
            occurredAt: new Date(`2026-11-2${seq}T00:00:00.000Z`),
            actor: 'old',
            action: 'old.event',
            subject: `n:${seq}`,
            details: { seq },
          };
          const hash = auditHash(content, prevHash);
          await orm.em.getConnection().execute(
            `insert into audit_event (seq, occurred_at, actor, action, subject, details, prev_hash, hash)
               values (?, ?, ?, ?, ?, ?::jsonb, ?, ?)`,
            [
              seq,
              content.occurredAt,
              'old',
              'old.event',
              content.subject,
              '{"seq":"' + seq + '"}',
              prevHash,
              hash,
            ],
          );
          prevHash = hash;
        }
        await orm.getMigrator().up();
        expect((await append(orm, 4)).seq).toBe('4');
        expect(await verifyAuditChain(orm.em.fork())).toEqual({ ok: true, checked: 4 });
      } finally {
        await orm.close(true);
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      }
    },
  );
});
