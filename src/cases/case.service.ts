import { randomUUID } from 'node:crypto';
import type { AuditService } from '../audit/audit.service.js';
import type { Clock } from '../shared/clock.js';
import type { Tx } from '../shared/transaction.js';
import { Case, type CaseSeverity, type CaseSource } from './case.entity.js';

export interface OpenCaseInput {
  title: string;
  severity: CaseSeverity;
  source: CaseSource;
  deviceRef: string | null;
  evidence: Record<string, unknown>;
  actor: string;
}

/** Opens cases inside the caller's transaction, so a case exists exactly when its cause committed. */
export class CaseService {
  constructor(
    private readonly audit: AuditService,
    private readonly clock: Clock,
  ) {}

  /**
   * Opens a case, or returns the device's open case of the same source (never two open cases for one
   * device and cause) after adding the new evidence to it.
   */
  async openOrAppend(tx: Tx, input: OpenCaseInput): Promise<Case> {
    const now = this.clock.now();
    if (input.deviceRef) {
      const open = await tx.em.findOne(Case, {
        deviceRef: input.deviceRef,
        source: input.source,
        status: { $in: ['OPEN', 'INVESTIGATING'] },
      });
      if (open) {
        const history = Array.isArray(open.evidence.appended) ? (open.evidence.appended as unknown[]) : [];
        open.evidence = {
          ...open.evidence,
          appended: [...history, { at: now.toISOString(), ...input.evidence }],
        };
        open.updatedAt = now;
        await tx.em.flush();
        return open;
      }
    }
    const [{ nextval }] = (await tx.em
      .getConnection()
      .execute<{ nextval: string }[]>(
        `select nextval('case_number_seq')`,
        [],
        'all',
        tx.em.getTransactionContext(),
      )) as [{ nextval: string }];
    const record = new Case();
    record.id = randomUUID();
    record.number = Number(nextval);
    record.title = input.title;
    record.severity = input.severity;
    record.source = input.source;
    record.deviceRef = input.deviceRef;
    record.evidence = input.evidence;
    record.openedAt = now;
    record.updatedAt = now;
    tx.em.persist(record);
    await tx.em.flush();
    await this.audit.record(tx, {
      actor: input.actor,
      action: 'case.opened',
      subject: `case:${record.number}`,
      details: {
        source: input.source,
        severity: input.severity,
        deviceRef: input.deviceRef,
        title: input.title,
      },
    });
    return record;
  }
}
