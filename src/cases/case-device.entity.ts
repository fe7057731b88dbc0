import { EntitySchema } from '@mikro-orm/core';

/** A device a case is about; a case links one or more devices, a device appears in many cases. */
export class CaseDevice {
  caseRef!: string;
  deviceRef!: string;
  linkedAt!: Date;
  linkedBy!: string;
}

export const CaseDeviceSchema = new EntitySchema<CaseDevice>({
  class: CaseDevice,
  tableName: 'case_device',
  properties: {
    caseRef: { type: 'uuid', primary: true, fieldName: 'case_ref' },
    deviceRef: { type: 'uuid', primary: true, fieldName: 'device_ref' },
    linkedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    linkedBy: { type: 'string', length: 200 },
  },
});
