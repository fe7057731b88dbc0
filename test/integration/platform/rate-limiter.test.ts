import { MikroORM } from '@mikro-orm/postgresql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ormOptions } from '../../../src/db/database.js';
import { RateLimiter } from '../../../src/ratelimit/rate-limiter.js';
import { ManualClock } from '../../../src/shared/clock.js';
import { RateLimitedError } from '../../../src/shared/errors.js';
import { freshDatabaseUrl } from '../../support/database.js';

let orm: MikroORM;
const clock = new ManualClock(new Date('2026-11-29T12:00:00.000Z'));
const limiter = new RateLimiter(clock);

beforeAll(async () => {
  orm = await MikroORM.init(ormOptions(await freshDatabaseUrl()));
});

afterAll(async () => {
  await orm?.close(true);
});

const hit = (device: string, address: string) =>
  limiter.hitAll(orm.em.fork(), 60, [
    { key: `ott-device:${device}`, limit: 2 },
    { key: `ott-address:${address}`, limit: 3 },
  ]);

describe('RateLimiter.hitAll', () => {
  it('counts every key in one upsert and refuses when any of them is over its limit', async () => {
    await hit('a', '10.0.0.1');
    await hit('a', '10.0.0.1');
    // Device a is over; the address still counts the request (its third).
    await expect(hit('a', '10.0.0.1')).rejects.toThrow(/too many requests for ott-device;/);
    await expect(hit('b', '10.0.0.1')).rejects.toThrow(/too many requests for ott-address;/);
    await hit('b', '10.0.0.2');

    clock.advance(30_000);
    const refused = await hit('a', '10.0.0.1').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RateLimitedError);
    expect((refused as RateLimitedError).message).toMatch(/for ott-address and ott-device;/);
    expect((refused as RateLimitedError).retryAfterSeconds).toBe(30);

    // Both windows restart after their length.
    clock.advance(30_000);
    await hit('a', '10.0.0.1');
  });
});
