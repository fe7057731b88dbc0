import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let viewer: string;
const prefix = `fleet-${randomBytes(2).toString('hex')}`;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  viewer = await service.token('viewer');
  // Only the page's own statements may be counted: the background passes stop here.
  await service.scheduler.stop();
  await service.riskScheduler.stop();
  const em = () => service.services.database.orm.em.fork();
  await service.services.inventory.import(
    em(),
    Array.from({ length: 120 }, (_, index) => ({
      device_id: `${prefix}-${String(index).padStart(3, '0')}`,
      device_type: 'PLC',
      site: `site-${index % 4}`,
    })),
    'test',
  );
  for (let index = 0; index < 120; index += 7) {
    await service.services.risk.reportIocHit(
      em(),
      {
        deviceId: `${prefix}-${String(index).padStart(3, '0')}`,
        indicator: `ioc-${index}`,
        source: 'test',
        severity: index % 2 ? 'CRITICAL' : 'LOW',
        observedAt: service.services.clock.now(),
      },
      'test',
    );
  }
});

afterAll(async () => {
  await service?.close();
});

const FLEET_PAGE = `query Fleet($first: Int!, $prefix: String!) {
  devices(first: $first, filter: { deviceIdPrefix: $prefix }, orderBy: { field: RISK_SCORE, direction: DESC }) {
    totalCount
    edges { node {
      deviceId riskScore riskBand attestationStatus
      currentCertificate { serial notAfter }
      lastAttestation { outcome decidedAt }
      cases { number status source }
      topRiskFactors { kind severity contribution }
    } }
  }
}`;

/** Runs the fleet page and counts the SQL statements the service sent for it. */
async function statementsFor(first: number): Promise<{ statements: number; rows: number }> {
  const knex = service.services.database.orm.em.getConnection().getKnex();
  let statements = 0;
  const count = () => (statements += 1);
  knex.on('query', count);
  try {
    const { body } = await graphql<{ devices: { edges: unknown[] } }>(
      service.app.urls.graphql,
      viewer,
      FLEET_PAGE,
      {
        first,
        prefix,
      },
    );
    expect(body.errors).toBeUndefined();
    return { statements, rows: body.data!.devices.edges.length };
  } finally {
    knex.off('query', count);
  }
}

describe('the fleet page', () => {
  it('costs the same small number of SQL statements for 10 or 100 devices with their relations', async () => {
    const small = await statementsFor(10);
    const large = await statementsFor(100);
    expect(small.rows).toBe(10);
    expect(large.rows).toBe(100);
    expect(large.statements).toBe(small.statements);
    // Token check, page, count, and one statement per relation (certificate, last attestation,
    // cases, top risk factors).
    expect(large.statements).toBeLessThanOrEqual(7);
  });
});

describe('the fleet page indexes', () => {
  it('read a site page, riskiest first, in index order and count it from the index alone', async () => {
    const knex = service.services.database.orm.em.getConnection().getKnex();
    const plans = await knex.transaction(async (trx) => {
      // A plan that needs a Sort (or the table for the count) then costs more than any index plan,
      // so on a table of any size the planner takes the index whenever it serves the query.
      await trx.raw('set local enable_sort = off');
      await trx.raw('set local enable_seqscan = off');
      await trx.raw('set local enable_bitmapscan = off');
      const plan = async (sql: string) => {
        const result = await trx.raw<{ rows: Array<{ 'QUERY PLAN': string }> }>(`explain (costs off) ${sql}`);
        return result.rows.map((row) => row['QUERY PLAN']).join('\n');
      };
      return {
        site: await plan(
          `select * from device where site_id = 'site-1' and enrollment_state <> 'REJECTED'
           order by risk_score desc nulls last, device_id desc limit 101`,
        ),
        fleet: await plan(
          `select * from device where enrollment_state <> 'REJECTED'
           order by risk_score desc nulls last, device_id desc limit 101`,
        ),
        count: await plan(
          `select count(*) from device where site_id = 'site-1' and enrollment_state <> 'REJECTED'`,
        ),
      };
    });
    expect(plans.site).toContain('device_site_risk_idx');
    expect(plans.site).not.toMatch(/Sort/);
    expect(plans.fleet).toContain('device_risk_order_idx');
    expect(plans.fleet).not.toMatch(/Sort/);
    expect(plans.count).toMatch(/Index Only Scan using device_site_risk_idx/);
  });
});
