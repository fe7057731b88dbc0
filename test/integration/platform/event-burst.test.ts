import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceChangedEvent } from '../../../src/shared/events.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
});

afterAll(async () => {
  await service?.close();
});

describe('the event bus under a burst', () => {
  it('keeps the service and a subscriber that is not reading yet alive through 5,000 events in one turn', async () => {
    const COUNT = 5_000;
    // Like the service's own loops while their consumer awaits the database.
    const lagging = service.services.pubsub.subscribe('device.changed');
    const event = (index: number): DeviceChangedEvent =>
      ({
        deviceId: `burst-${index}`,
        change: 'registered',
        attestationStatus: 'PENDING',
        enrollmentState: 'REGISTERED',
        previousAttestationStatus: null,
        riskScore: 0,
        riskBand: 'NORMAL',
      }) as DeviceChangedEvent;
    // A Repeater-based bus (yoga's createPubSub) throws past 1,024 unread events, from inside the
    // publisher's dispatch: the service's own subscribers would end the process here.
    expect(() => {
      for (let index = 0; index < COUNT; index += 1)
        service.services.pubsub.publish('device.changed', event(index));
    }).not.toThrow();

    let received = 0;
    for await (const changed of lagging) {
      expect(changed.deviceId).toBe(`burst-${received}`);
      received += 1;
      if (received === COUNT) break;
    }
    const { body } = await graphql<{ viewer: { role: string } }>(
      service.app.urls.graphql,
      await service.token('viewer'),
      '{ viewer { role } }',
    );
    expect(body.data?.viewer.role).toBe('VIEWER');
  });
});
