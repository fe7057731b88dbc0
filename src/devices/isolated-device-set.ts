import type { EntityManager } from '@mikro-orm/postgresql';

/** The `device.changed` changes that move a device in or out of isolation. */
export const ISOLATION_CHANGES = ['isolated', 'released'] as const;

export function isIsolationChange(change: string): boolean {
  return (ISOLATION_CHANGES as readonly string[]).includes(change);
}

/**
 * The ids of the isolated devices, in memory, so a broker's ACL answers every publish without a query.
 * Several instances share the database and a bus between them (Redis) may lose or reorder events, so
 * the set is never patched from an event's content: it is read whole from the database (a partial
 * index, a handful of rows) at start and again after each isolation change.
 */
export class IsolatedDeviceSet {
  private ids: ReadonlySet<string> = new Set();
  private loading: Promise<void> = Promise.resolve();

  has(deviceId: string): boolean {
    return this.ids.has(deviceId);
  }

  get size(): number {
    return this.ids.size;
  }

  /** Reads the set afresh. Reads queue, so an earlier, slower read never overwrites a newer one. */
  reload(em: EntityManager): Promise<void> {
    const next = this.loading
      .catch(() => {})
      .then(async () => {
        const rows = await em
          .getConnection()
          .execute<{ device_id: string }[]>(`select "device_id" from "device" where "isolated"`);
        this.ids = new Set(rows.map((row) => row.device_id));
      });
    this.loading = next;
    return next;
  }
}
