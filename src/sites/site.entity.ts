import { EntitySchema } from '@mikro-orm/core';

/** How a controller's heartbeat reached the service. */
export const HEARTBEAT_CHANNELS = ['mqtt', 'rest'] as const;
export type HeartbeatChannel = (typeof HEARTBEAT_CHANNELS)[number];

/**
 * A physical site and its controller. The id is the business key devices already carry (`siteId`)
 * and an MQTT topic level (`cps/site/{site_id}/heartbeat`), so it follows the device id rules.
 */
export class Site {
  id!: string;
  name!: string;
  /**
   * The device id of the site controller: the certificate CN the embedded broker accepts heartbeats
   * from on this site's topic. Null when the controller only heartbeats over REST with a site token.
   */
  controllerId: string | null = null;
  /** Service time of the last heartbeat (never the controller's clock): the basis of liveness. */
  lastHeartbeatAt: Date | null = null;
  lastHeartbeatChannel: HeartbeatChannel | null = null;
  createdAt!: Date;
  updatedAt!: Date;
}

export const SiteSchema = new EntitySchema<Site>({
  class: Site,
  tableName: 'site',
  properties: {
    id: { type: 'string', length: 64, primary: true },
    name: { type: 'string', length: 200 },
    controllerId: { type: 'string', length: 64, nullable: true },
    lastHeartbeatAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
    lastHeartbeatChannel: { type: 'string', length: 8, nullable: true },
    createdAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    updatedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
  },
});
