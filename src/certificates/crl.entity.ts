import { EntitySchema } from '@mikro-orm/core';

/**
 * The issuing CA's current CRL, stored so every service instance serves the same bytes and the CRL
 * number only ever grows (RFC 5280 5.2.3). One row, id 1.
 */
export class CrlRecord {
  id = 1;
  crlNumber!: string;
  thisUpdate!: Date;
  nextUpdate!: Date;
  der!: Buffer;
}

export const CrlRecordSchema = new EntitySchema<CrlRecord>({
  class: CrlRecord,
  tableName: 'crl',
  properties: {
    id: { type: 'integer', primary: true, autoincrement: false },
    crlNumber: { type: 'bigint', columnType: 'bigint' },
    thisUpdate: { type: 'datetime', columnType: 'timestamptz(3)' },
    nextUpdate: { type: 'datetime', columnType: 'timestamptz(3)' },
    der: { type: 'blob', columnType: 'bytea' },
  },
});
