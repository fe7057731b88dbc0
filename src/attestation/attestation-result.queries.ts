import type { EntityManager } from '@mikro-orm/postgresql';
import { plainRowsByKeys, selectList } from '../db/plain-rows.js';
import { AttestationResult } from './attestation-result.entity.js';

/**
 * The newest result of each device (row ids) that has one, as plain rows for reading. One statement:
 * per device, a backward scan of attestation_result_device_idx (device_ref, seq) that stops at the
 * first entry, so the cost is one index probe per device however long its history.
 */
export function latestResultsOf(
  em: EntityManager,
  deviceRefs: readonly string[],
): Promise<AttestationResult[]> {
  return plainRowsByKeys(
    em,
    AttestationResult,
    deviceRefs,
    `select ${selectList(em, AttestationResult, 'r')}
       from unnest(array[?]::uuid[]) as wanted(device_ref)
       cross join lateral (
         select * from "attestation_result" latest
          where latest."device_ref" = wanted.device_ref order by latest."seq" desc limit 1) r`,
  );
}
