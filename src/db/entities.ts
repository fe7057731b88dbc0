import { ApiTokenSchema } from '../auth/api-token.entity.js';
import { AttestationResultSchema } from '../attestation/attestation-result.entity.js';
import { AttestationSettingsVersionSchema } from '../attestation/attestation-settings.entity.js';
import { AttestationChallengeSchema } from '../attestation/challenge.entity.js';
import { AuditEventSchema } from '../audit/audit-event.entity.js';
import { CaseDeviceSchema } from '../cases/case-device.entity.js';
import { CaseEventSchema } from '../cases/case-event.entity.js';
import { CaseSchema } from '../cases/case.entity.js';
import { CrlRecordSchema } from '../certificates/crl.entity.js';
import { DeviceCertificateSchema } from '../certificates/device-certificate.entity.js';
import { DeviceSchema } from '../devices/device.entity.js';
import { EnrollmentGroupSchema } from '../enrollment/enrollment-group.entity.js';
import { EnrollmentTokenSchema } from '../enrollment/enrollment-token.entity.js';
import { PolicyBundleSchema } from '../policy/policy-bundle.entity.js';
import { RiskFactorSchema } from '../risk/risk-factor.entity.js';
import { RiskHistoryEntrySchema } from '../risk/risk-history.entity.js';
import { RateLimitWindowSchema } from '../ratelimit/rate-limit.entity.js';
import { SiteSchema } from '../sites/site.entity.js';

/** Every entity the ORM knows; a domain adds its schemas here. */
export const entities = [
  AuditEventSchema,
  ApiTokenSchema,
  DeviceSchema,
  DeviceCertificateSchema,
  CrlRecordSchema,
  EnrollmentTokenSchema,
  EnrollmentGroupSchema,
  CaseSchema,
  CaseDeviceSchema,
  CaseEventSchema,
  RateLimitWindowSchema,
  AttestationSettingsVersionSchema,
  AttestationChallengeSchema,
  AttestationResultSchema,
  PolicyBundleSchema,
  RiskFactorSchema,
  RiskHistoryEntrySchema,
  SiteSchema,
];
