import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261123000000_platform } from './Migration20261123000000_platform.js';
import { Migration20261123010000_enrollment } from './Migration20261123010000_enrollment.js';
import { Migration20261123020000_attestation } from './Migration20261123020000_attestation.js';
import { Migration20261129000000_device_operations } from './Migration20261129000000_device_operations.js';
import { Migration20261129010000_cases } from './Migration20261129010000_cases.js';
import { Migration20261129020000_idempotency_keys } from './Migration20261129020000_idempotency_keys.js';
import { Migration20261129060000_risk } from './Migration20261129060000_risk.js';
import { Migration20261129161500_isolation } from './Migration20261129161500_isolation.js';
import { Migration20261129170000_sites } from './Migration20261129170000_sites.js';
import { Migration20261129180000_certificate_list } from './Migration20261129180000_certificate_list.js';
import { Migration20261129190000_audit_chain_head } from './Migration20261129190000_audit_chain_head.js';
import { Migration20261129210000_attestation_group_guard } from './Migration20261129210000_attestation_group_guard.js';
import { Migration20261129214500_fleet_page_indexes } from './Migration20261129214500_fleet_page_indexes.js';
import { Migration20261129230000_result_site } from './Migration20261129230000_result_site.js';

/**
 * The migrations in order. Listed explicitly (not globbed) so the same list works from compiled
 * JavaScript, under tsx and under vitest, where umzug's own import() of .ts files fails.
 */
export const migrationsList: MigrationObject[] = [
  { name: 'Migration20261123000000_platform', class: Migration20261123000000_platform },
  { name: 'Migration20261123010000_enrollment', class: Migration20261123010000_enrollment },
  { name: 'Migration20261123020000_attestation', class: Migration20261123020000_attestation },
  { name: 'Migration20261129000000_device_operations', class: Migration20261129000000_device_operations },
  { name: 'Migration20261129010000_cases', class: Migration20261129010000_cases },
  { name: 'Migration20261129020000_idempotency_keys', class: Migration20261129020000_idempotency_keys },
  { name: 'Migration20261129060000_risk', class: Migration20261129060000_risk },
  { name: 'Migration20261129161500_isolation', class: Migration20261129161500_isolation },
  { name: 'Migration20261129170000_sites', class: Migration20261129170000_sites },
  { name: 'Migration20261129180000_certificate_list', class: Migration20261129180000_certificate_list },
  { name: 'Migration20261129190000_audit_chain_head', class: Migration20261129190000_audit_chain_head },
  {
    name: 'Migration20261129210000_attestation_group_guard',
    class: Migration20261129210000_attestation_group_guard,
  },
  { name: 'Migration20261129214500_fleet_page_indexes', class: Migration20261129214500_fleet_page_indexes },
  { name: 'Migration20261129230000_result_site', class: Migration20261129230000_result_site },
];
