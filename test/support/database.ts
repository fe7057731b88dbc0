import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

const PRESERVED_TABLES = new Set(['mikro_orm_migrations']);

/**
 * A migrated database with no rows for the calling test file: its own copy of the template on
 * PostgreSQL, or the shared embedded database emptied (files run one at a time there).
 */
export async function freshDatabaseUrl(): Promise<string> {
  const templateUrl = inject('databaseTemplateUrl');
  if (inject('databaseMode') === 'postgresql') {
    const template = new URL(templateUrl).pathname.slice(1);
    const name = `fp_t_${template.replace('fp_template_', '')}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: templateUrl.replace(`/${template}`, '/postgres') });
    await admin.connect();
    try {
      await admin.query(`create database ${name} template ${template}`);
    } finally {
      await admin.end();
    }
    const url = new URL(templateUrl);
    url.pathname = `/${name}`;
    return url.toString();
  }
  const client = new pg.Client({ connectionString: templateUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ tablename: string }>(
      `select tablename from pg_tables where schemaname = 'public'`,
    );
    const tables = rows.map((row) => row.tablename).filter((name) => !PRESERVED_TABLES.has(name));
    if (tables.length > 0) await client.query(`truncate ${tables.map((t) => `"${t}"`).join(', ')} cascade`);
  } finally {
    await client.end();
  }
  return templateUrl;
}
