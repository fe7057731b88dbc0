import type { EntityManager } from '@mikro-orm/postgresql';
import type { AppEvents, EventPublisher } from './events.js';

/** A unit of work: the transactional EntityManager plus events held back until commit. */
export interface Tx {
  readonly em: EntityManager;
  /**
   * Publishes after commit. A function payload is evaluated then, for values the database assigns
   * on flush (generated keys, sequence numbers).
   */
  emit<K extends keyof AppEvents>(topic: K, payload: AppEvents[K] | (() => AppEvents[K])): void;
}

/**
 * Runs `work` in one database transaction and publishes the events it emitted only after the commit,
 * so no subscriber ever sees a change that was rolled back.
 */
export class TransactionRunner {
  constructor(private readonly events: EventPublisher) {}

  async run<T>(em: EntityManager, work: (tx: Tx) => Promise<T>): Promise<T> {
    const pending: Array<() => void> = [];
    const result = await em.transactional(async (transactional) =>
      work({
        em: transactional,
        emit: (topic, payload) =>
          pending.push(() => this.events.publish(topic, typeof payload === 'function' ? payload() : payload)),
      }),
    );
    for (const publish of pending) publish();
    return result;
  }
}
