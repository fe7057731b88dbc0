import { ApiTokenSchema } from '../auth/api-token.entity.js';
import { AuditEventSchema } from '../audit/audit-event.entity.js';

/** Every entity the ORM knows; a domain adds its schemas here. */
export const entities = [AuditEventSchema, ApiTokenSchema];
