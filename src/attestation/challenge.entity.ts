import { EntitySchema } from '@mikro-orm/core';

/**
 * Protocol state of one challenge. OPEN -> ANSWERED (a valid or failing response decided it) or
 * TIMED_OUT (no decision by the deadline, or verification crashed: fail closed, counted as a timeout).
 */
export const CHALLENGE_STATES = ['OPEN', 'ANSWERED', 'TIMED_OUT'] as const;
export type ChallengeState = (typeof CHALLENGE_STATES)[number];

export class AttestationChallenge {
  id!: string;
  deviceRef!: string;
  deviceId!: string;
  nonce!: string;
  issuedAt!: Date;
  deadlineAt!: Date;
  state: ChallengeState = 'OPEN';
  /** SHA-256 of the exact payload that decided it: a byte-identical QoS 1 redelivery is ignored. */
  responseHash: string | null = null;
  decidedAt: Date | null = null;
}

export const AttestationChallengeSchema = new EntitySchema<AttestationChallenge>({
  class: AttestationChallenge,
  tableName: 'attestation_challenge',
  properties: {
    id: { type: 'uuid', primary: true },
    deviceRef: { type: 'uuid', fieldName: 'device_ref' },
    deviceId: { type: 'string', length: 64 },
    nonce: { type: 'string', length: 256 },
    issuedAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    deadlineAt: { type: 'datetime', columnType: 'timestamptz(3)' },
    state: { type: 'string', length: 16 },
    responseHash: { type: 'string', length: 64, nullable: true },
    decidedAt: { type: 'datetime', columnType: 'timestamptz(3)', nullable: true },
  },
});
