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
  private readonly enlisted = new WeakMap<EntityManager, (tx: Tx) => Promise<void>>();

  constructor(private readonly events: EventPublisher) {}

  async run<T>(em: EntityManager, work: (tx: Tx) => Promise<T>): Promise<T> {
    const pending: Array<() => void> = [];
    const joined = this.enlisted.get(em);
    const result = await em.transactional(async (transactional) => {
      const tx: Tx = {
        em: transactional,
        emit: (topic, payload) =>
          pending.push(() => this.events.publish(topic, typeof payload === 'function' ? payload() : payload)),
      };
      const value = await work(tx);
      await joined?.(tx);
      return value;
    });
    if (joined && this.enlisted.get(em) === joined) this.enlisted.delete(em);
    for (const publish of pending) publish();
    return result;
  }

  /**
   * For work that is a single statement on `em` outside any transaction (atomic by itself, in
   * autocommit): the same `Tx` and emit contract as `run`, without the BEGIN and COMMIT round trips.
   * Events are published once the work resolved, that is after its statement committed.
   */
  async single<T>(em: EntityManager, work: (tx: Tx) => Promise<T>): Promise<T> {
    const pending: Array<() => void> = [];
    const value = await work({
      em,
      emit: (topic, payload) =>
        pending.push(() => this.events.publish(topic, typeof payload === 'function' ? payload() : payload)),
    });
    for (const publish of pending) publish();
    return value;
  }

  /**
   * Joins `work` to the next transaction run on `em` that commits, as its last statements, so what
   * it writes commits or rolls back with that transaction's own change; a transaction that rolls
   * back passes it on to the next one. Only `em` itself qualifies, not its forks. Returns a function
   * that withdraws it and tells whether it ever committed.
   */
  enlist(em: EntityManager, work: (tx: Tx) => Promise<void>): () => boolean {
    this.enlisted.set(em, work);
    return () => {
      const pendingStill = this.enlisted.get(em) === work;
      if (pendingStill) this.enlisted.delete(em);
      return !pendingStill;
    };
  }
}
