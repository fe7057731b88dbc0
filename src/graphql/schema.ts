import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './types/scalars.js';
import './types/errors.js';
import './types/system.js';
import './types/tokens.js';
import './types/audit.js';
import './types/certificates.js';
import './types/cases.js';
import './types/devices.js';
import './types/enrollment-groups.js';
import './types/attestation.js';
import './types/risk.js';
import './types/policy.js';
import './types/sites.js';
import './types/fleet.js';

/** The schema, sorted so the printed file changes only when the API does. */
export const schema = lexicographicSortSchema(builder.toSchema());
