import { EntitySchema } from '@mikro-orm/core';
import type { Criticality, DeviceType } from '../devices/device.entity.js';

/**
 * Zero-touch enrollment for devices that carry a manufacturer certificate (IEEE 802.1AR IDevID).
 * A device is matched to the group whose representative certificate is nearest to its leaf in the
 * verified chain (enrollment-group.matcher.ts).
 */
export class EnrollmentGroup {
  id!: string;
  name!: string;
  /** The group's trust-anchor chain, PEM certificates from root to the most specific intermediate. */
  chainPems!: string[];
  /** SHA-256 (hex, of DER) of the certificate of `chainPems` that stands for this group. */
  representativeFingerprint!: string;
  allowCommonNames: string[] = [];
  denyCommonNames: string[] = [];
  defaultDeviceType: DeviceType = 'OTHER';
  defaultCriticality: Criticality = 'standard';
  defaultSiteId: string | null = null;
  autoApprove = false;
  createdAt!: Date;
  updatedAt!: Date;
}

export const EnrollmentGroupSchema = new EntitySchema<EnrollmentGroup>({
  class: EnrollmentGroup,
  tableName: 'enrollment_group',
  properties: {
    id: { type: 'uuid', primary: true },
    name: { type: 'string', length: 200, unique: true },
    chainPems: { type: 'json' },
    representativeFingerprint: { type: 'string', length: 64, unique: true },
    allowCommonNames: { type: 'json' },
    denyCommonNames: { type: 'json' },
    defaultDeviceType: { type: 'string', length: 16 },
    defaultCriticality: { type: 'string', length: 16 },
    defaultSiteId: { type: 'string', length: 64, nullable: true },
    autoApprove: { type: 'boolean' },
    createdAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    updatedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
  },
});
