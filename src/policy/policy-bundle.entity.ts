import { EntitySchema } from '@mikro-orm/core';
import type { DeviceType } from '../devices/device.entity.js';
import type { PolicyBundleDocument } from './policy-bundle.document.js';

/** One published version of a device type's policy; rows are never updated, only added. */
export class PolicyBundle {
  id!: string;
  deviceType!: DeviceType;
  version!: number;
  document!: PolicyBundleDocument;
  publishedAt!: Date;
  publishedBy!: string;
  /** SHA-256 (hex) of the document's RFC 8785 canonical JSON: what auditors compare. */
  digest!: string;
}

export const PolicyBundleSchema = new EntitySchema<PolicyBundle>({
  class: PolicyBundle,
  tableName: 'policy_bundle',
  properties: {
    id: { type: 'uuid', primary: true },
    deviceType: { type: 'string', length: 16 },
    version: { type: 'integer' },
    document: { type: 'json' },
    publishedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    publishedBy: { type: 'string', length: 200 },
    digest: { type: 'string', length: 64 },
  },
});
