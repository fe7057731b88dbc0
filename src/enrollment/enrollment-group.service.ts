import { X509Certificate, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AuditService } from '../audit/audit.service.js';
import { CRITICALITIES, DEVICE_TYPES, type Criticality, type DeviceType } from '../devices/device.entity.js';
import type { Clock } from '../shared/clock.js';
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  UnauthenticatedError,
  ValidationError,
} from '../shared/errors.js';
import { DEVICE_ID_PATTERN } from '../shared/identifiers.js';
import type { TransactionRunner } from '../shared/transaction.js';
import { EnrollmentGroup } from './enrollment-group.entity.js';
import { fingerprintOf, verifyManufacturerChain } from './manufacturer-chain.js';

export interface EnrollmentGroupInput {
  name: string;
  chainPems: string[];
  /** Which certificate of `chainPems` stands for the group: its SHA-256 fingerprint (hex). */
  representativeFingerprint: string;
  allowCommonNames?: string[];
  denyCommonNames?: string[];
  defaultDeviceType?: DeviceType;
  defaultCriticality?: Criticality;
  defaultSiteId?: string | null;
  autoApprove?: boolean;
}

export interface GroupMatch {
  group: EnrollmentGroup;
  leafCommonName: string;
}

/** Zero-touch enrollment groups, and the rule that picks one for a manufacturer certificate chain. */
export class EnrollmentGroupService {
  constructor(
    private readonly audit: AuditService,
    private readonly transactions: TransactionRunner,
    private readonly clock: Clock,
  ) {}

  list(em: EntityManager): Promise<EnrollmentGroup[]> {
    return em.find(EnrollmentGroup, {}, { orderBy: { name: 'asc' } });
  }

  async create(em: EntityManager, input: EnrollmentGroupInput, actor: string): Promise<EnrollmentGroup> {
    const fields = validate(input);
    return this.transactions.run(em, async (tx) => {
      if (
        await tx.em.findOne(EnrollmentGroup, {
          $or: [{ name: fields.name }, { representativeFingerprint: fields.representativeFingerprint }],
        })
      ) {
        throw new ConflictError(
          'a group with this name or representative certificate exists',
          'group-exists',
        );
      }
      const now = this.clock.now();
      const group = Object.assign(new EnrollmentGroup(), fields, {
        id: randomUUID(),
        createdAt: now,
        updatedAt: now,
      });
      tx.em.persist(group);
      await tx.em.flush();
      await this.audit.record(tx, {
        actor,
        action: 'enrollment-group.created',
        subject: `enrollment-group:${group.name}`,
        details: { representative: group.representativeFingerprint, autoApprove: group.autoApprove },
      });
      return group;
    });
  }

  async update(
    em: EntityManager,
    id: string,
    input: EnrollmentGroupInput,
    actor: string,
  ): Promise<EnrollmentGroup> {
    const fields = validate(input);
    return this.transactions.run(em, async (tx) => {
      const group = await tx.em.findOne(EnrollmentGroup, { id });
      if (!group) throw new NotFoundError(`enrollment group ${id} not found`, 'group-not-found');
      Object.assign(group, fields, { updatedAt: this.clock.now() });
      await tx.em.flush();
      await this.audit.record(tx, {
        actor,
        action: 'enrollment-group.updated',
        subject: `enrollment-group:${group.name}`,
        details: { representative: group.representativeFingerprint, autoApprove: group.autoApprove },
      });
      return group;
    });
  }

  async delete(em: EntityManager, id: string, actor: string): Promise<EnrollmentGroup> {
    return this.transactions.run(em, async (tx) => {
      const group = await tx.em.findOne(EnrollmentGroup, { id });
      if (!group) throw new NotFoundError(`enrollment group ${id} not found`, 'group-not-found');
      tx.em.remove(group);
      await tx.em.flush();
      await this.audit.record(tx, {
        actor,
        action: 'enrollment-group.deleted',
        subject: `enrollment-group:${group.name}`,
      });
      return group;
    });
  }

  /**
   * Authenticates a presented manufacturer chain against the union of all groups' certificates, then
   * picks the group: start at the leaf-most intermediate of the verified path and move one step
   * towards the root until a certificate is some group's representative.
   */
  async match(em: EntityManager, presented: readonly Buffer[]): Promise<GroupMatch> {
    const groups = await this.list(em);
    const anchors = groups.flatMap((group) => group.chainPems.map((pem) => new X509Certificate(pem)));
    const path = verifyManufacturerChain(presented, anchors, this.clock.now());
    if (!path) {
      throw new UnauthenticatedError(
        'the client certificate chain does not lead to a manufacturer trust anchor',
        'manufacturer-chain-untrusted',
      );
    }
    const leafCommonName = /(?:^|\n)CN=([^\n]+)/.exec(path[0]!.subject)?.[1];
    if (!leafCommonName || !DEVICE_ID_PATTERN.test(leafCommonName)) {
      throw new ForbiddenError(
        'the manufacturer certificate has no usable device id as CN',
        'manufacturer-cn-invalid',
      );
    }
    for (const certificate of path.slice(1)) {
      const group = groups.find(
        (candidate) => candidate.representativeFingerprint === fingerprintOf(certificate),
      );
      if (!group) continue;
      // Deny beats allow: a recalled or known-bad unit stays out even if its batch is allowed.
      if (group.denyCommonNames.includes(leafCommonName)) {
        throw new ForbiddenError(
          `${leafCommonName} is on the deny-list of group ${group.name}`,
          'denied-by-group',
        );
      }
      if (group.allowCommonNames.length > 0 && !group.allowCommonNames.includes(leafCommonName)) {
        throw new ForbiddenError(
          `${leafCommonName} is not on the allow-list of group ${group.name}`,
          'not-allowed-by-group',
        );
      }
      return { group, leafCommonName };
    }
    throw new ForbiddenError('no enrollment group matches this manufacturer chain', 'no-matching-group');
  }
}

function validate(input: EnrollmentGroupInput): Omit<EnrollmentGroup, 'id' | 'createdAt' | 'updatedAt'> {
  const name = input.name.trim();
  if (!name || name.length > 200) throw new ValidationError('name', 'name must be 1-200 characters');
  if (input.chainPems.length === 0)
    throw new ValidationError('chainPems', 'at least one certificate is required');
  const fingerprints = input.chainPems.map((pem, index) => {
    try {
      const certificate = new X509Certificate(pem);
      if (!certificate.ca) throw new Error('not a CA certificate');
      return fingerprintOf(certificate);
    } catch (error) {
      throw new ValidationError(
        `chainPems.${index}`,
        `not a CA certificate in PEM: ${(error as Error).message}`,
      );
    }
  });
  const representative = input.representativeFingerprint.replaceAll(':', '').toLowerCase();
  if (!fingerprints.includes(representative)) {
    throw new ValidationError(
      'representativeFingerprint',
      'the representative must be one of the chain certificates',
    );
  }
  const lists = {
    allowCommonNames: input.allowCommonNames ?? [],
    denyCommonNames: input.denyCommonNames ?? [],
  };
  for (const [field, names] of Object.entries(lists)) {
    const bad = names.find((cn) => !DEVICE_ID_PATTERN.test(cn));
    if (bad !== undefined) throw new ValidationError(field, `${bad} is not a valid device id`);
  }
  if (input.defaultDeviceType && !DEVICE_TYPES.includes(input.defaultDeviceType)) {
    throw new ValidationError('defaultDeviceType', 'unknown device type');
  }
  if (input.defaultCriticality && !CRITICALITIES.includes(input.defaultCriticality)) {
    throw new ValidationError('defaultCriticality', 'unknown criticality');
  }
  return {
    name,
    chainPems: input.chainPems.map((pem) => pem.trim()),
    representativeFingerprint: representative,
    ...lists,
    defaultDeviceType: input.defaultDeviceType ?? 'OTHER',
    defaultCriticality: input.defaultCriticality ?? 'standard',
    defaultSiteId: input.defaultSiteId ?? null,
    autoApprove: input.autoApprove ?? false,
  };
}
