import { EntitySchema } from '@mikro-orm/core';

/** A fixed-window counter shared by every service instance (no per-process state). */
export class RateLimitWindow {
  key!: string;
  windowStart!: Date;
  count!: number;
}

export const RateLimitWindowSchema = new EntitySchema<RateLimitWindow>({
  class: RateLimitWindow,
  tableName: 'rate_limit_window',
  properties: {
    key: { type: 'string', length: 200, primary: true },
    windowStart: { type: 'datetime', columnType: 'timestamptz(3)' },
    count: { type: 'integer' },
  },
});
