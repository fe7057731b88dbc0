import type { EntityManager } from '@mikro-orm/postgresql';
import type { Clock } from '../shared/clock.js';
import type { EventPublisher } from '../shared/events.js';

/**
 * `Device.lastSeenAt`, written cheaply: every device message notes its receipt time here (a map
 * write), and `flush` writes all noted devices in one UPDATE. A busy device costs one row write per
 * flush interval, not one per message. Times only move forward, so a late flush never rewinds one.
 */
export class DevicePresence {
  #pending = new Map<string, Date>();

  constructor(
    private readonly clock: Clock,
    private readonly events: EventPublisher,
    /** The online window: a device last seen before it was offline until this message. */
    private readonly onlineWindowMs: number,
  ) {}

  /** The device sent something now (any topic of its own, or a response its key signed). */
  seen(deviceId: string): void {
    this.#pending.set(deviceId, this.clock.now());
  }

  /** Writes what was noted since the last flush; tells subscribers which devices came back online. */
  async flush(em: EntityManager): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending].sort(([a], [b]) => (a < b ? -1 : 1));
    this.#pending = new Map();
    const ids = batch.map(([id]) => id);
    let rows: Array<{ device_id: string; seen: Date; previous: Date | null; written: boolean }>;
    try {
      // Rows are locked first, in id order, the order every multi-row device write takes, and rows
      // another transaction holds (an attestation decision) are skipped rather than waited for: the
      // flush never stalls a decision, and what it skipped is written by the next flush.
      rows = await em.getConnection().execute(
        `with locked as materialized (
           select id from device where device_id = any(array[?]::text[]) order by id for update skip locked),
         written as (
           update device d set last_seen_at = v.seen
             from (select unnest(array[?]::text[]) as device_id, unnest(array[?]::timestamptz[]) as seen) v,
                  locked, device old
            where d.id = locked.id and d.device_id = v.device_id and old.id = d.id
              and (d.last_seen_at is null or d.last_seen_at < v.seen)
            returning d.device_id, v.seen, old.last_seen_at as previous)
         select w.device_id, w.seen, w.previous, true as written from written w
         union all
         select d.device_id, null, null, false from device d
          where d.device_id = any(array[?]::text[]) and d.id not in (select id from locked)`,
        [ids, ids, batch.map(([, at]) => at.toISOString()), ids],
      );
    } catch (error) {
      // Put back what no newer message replaced, so the next flush writes it.
      for (const [id, at] of batch) if (!this.#pending.has(id)) this.#pending.set(id, at);
      throw error;
    }
    const skipped = new Set(rows.filter((row) => !row.written).map((row) => row.device_id));
    for (const [id, at] of batch) if (skipped.has(id) && !this.#pending.has(id)) this.#pending.set(id, at);
    const cameBack = rows
      .filter((row) => row.written)
      .filter(
        (row) =>
          row.previous === null ||
          new Date(row.seen).getTime() - new Date(row.previous).getTime() > this.onlineWindowMs,
      )
      .map((row) => row.device_id);
    if (cameBack.length > 0) {
      this.events.publish('device.presence', { deviceIds: cameBack, at: this.clock.now().toISOString() });
    }
  }
}
