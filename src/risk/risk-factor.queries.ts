import type { EntityManager } from '@mikro-orm/postgresql';
import { plainRowsByKeys, selectList } from '../db/plain-rows.js';
import { RiskFactor } from './risk-factor.entity.js';

/**
 * The `limit` heaviest factors still counting (not cleared) of each device (row ids), heaviest first
 * (the newest first among equals), as plain rows for reading; one statement for any number of devices.
 */
export function topFactorsOf(
  em: EntityManager,
  deviceRefs: readonly string[],
  limit: number,
): Promise<RiskFactor[]> {
  return plainRowsByKeys(
    em,
    RiskFactor,
    deviceRefs,
    `select ${selectList(em, RiskFactor, 'r')} from (
       select f.*, row_number() over (partition by f."device_ref" order by f."contribution" desc, f."seq" desc) as rank
         from "risk_factor" f where f."device_ref" in (?) and f."cleared_at" is null) r
      where r.rank <= ? order by r."contribution" desc, r."seq" desc`,
    [limit],
  );
}
