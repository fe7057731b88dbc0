import { createClient, type Client, type SubscribePayload } from 'graphql-ws';
import { expect } from 'vitest';
import WebSocket from 'ws';

/** A graphql-ws client of the service at `graphqlUrl`, authenticated in connection_init with `token`. */
export function wsClient(graphqlUrl: string, token: string): Client {
  return createClient({
    url: graphqlUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: false,
  });
}

/** One subscription's events, kept as they arrive so a test can wait for one and inspect the others. */
export class LiveFeed<T> {
  readonly received: T[] = [];
  readonly #events: ReturnType<Client['iterate']>;

  constructor(
    client: Client,
    payload: SubscribePayload,
    private readonly pick: (data: never) => T,
  ) {
    this.#events = client.iterate(payload);
  }

  async waitFor(predicate: (event: T) => boolean): Promise<T> {
    for (;;) {
      const found = this.received.find(predicate);
      if (found) return found;
      const next = await this.#events.next();
      if (next.done) throw new Error('subscription ended');
      expect(next.value.errors).toBeUndefined();
      this.received.push(this.pick(next.value.data as never));
    }
  }

  /**
   * Subscribing has no acknowledgement: runs `probe(attempt)` until an event it caused (`isProbe`)
   * arrives, so the subscription is known to be live before the real test.
   */
  async untilLive(isProbe: (event: T) => boolean, probe: (attempt: number) => Promise<void>): Promise<void> {
    const live = this.waitFor(isProbe);
    let arrived = false;
    void live.then(() => (arrived = true));
    for (let attempt = 0; attempt < 50 && !arrived; attempt++) {
      await probe(attempt);
      await Promise.race([live, new Promise((resolve) => setTimeout(resolve, 200))]);
    }
    await live;
  }

  async close(): Promise<void> {
    await this.#events.return?.();
  }
}
