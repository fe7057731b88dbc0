import { randomBytes } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuditEvent } from '../../../src/audit/audit-event.entity.js';
import { CaseEvent } from '../../../src/cases/case-event.entity.js';
import { Case, type CaseSource } from '../../../src/cases/case.entity.js';
import {
  AddCaseNoteDocument,
  AssignCaseDocument,
  AttachToCaseDocument,
  CaseDocument,
  CasesDocument,
  DeviceCasesDocument,
  LinkDeviceToCaseDocument,
  OpenCaseDocument,
  CaseEventsLiveDocument,
  SetCaseStatusDocument,
  type CaseEventsLiveSubscription,
  type CaseStatus,
  type CasesQueryVariables,
} from '../../../src/client/generated/graphql.js';
import type { Device } from '../../../src/devices/device.entity.js';
import { encodeCursor } from '../../../src/graphql/cursor.js';
import { LiveFeed, wsClient } from '../../support/live-feed.js';
import { graphql, startTestService, type TestService } from '../../support/service.js';

let service: TestService;
let operator: string;
let viewer: string;

beforeAll(async () => {
  service = await startTestService({ mqtt: 'embedded' });
  [operator, viewer] = await Promise.all([
    service.token('operator', 'soc-operator'),
    service.token('viewer', 'dashboard'),
  ]);
});

afterAll(async () => {
  await service?.close();
});

const em = () => service.services.database.orm.em.fork();

type Errors = Array<{ message: string; extensions?: Record<string, unknown> }>;

/** Runs a generated typed document over real HTTP. */
async function send<R, V>(
  token: string,
  document: TypedDocumentNode<R, V>,
  variables: V,
): Promise<{ data?: R | null; errors?: Errors }> {
  const { status, body } = await graphql<R>(
    service.app.urls.graphql,
    token,
    print(document),
    variables as Record<string, unknown>,
  );
  expect(status, JSON.stringify(body.errors)).toBe(200);
  return body;
}

async function ok<R, V>(token: string, document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
  const body = await send(token, document, variables);
  expect(body.errors, JSON.stringify(body.errors)).toBeUndefined();
  return body.data!;
}

/** The data of a mutation result that must be its success member. */
function success<T extends { __typename: string }>(result: T): Extract<T, { data: unknown }>['data'] {
  expect(result.__typename, JSON.stringify(result)).toMatch(/^Mutation\w+Success$/);
  return (result as Extract<T, { data: unknown }>).data;
}

const unique = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

async function registerDevice(prefix: string): Promise<Device> {
  const { device } = await service.services.inventory.register(
    em(),
    { device_id: unique(prefix), device_type: 'PLC' },
    'test',
  );
  return device;
}

async function openCase(deviceIds: string[] = [], extra: { assignee?: string; note?: string } = {}) {
  const { openCase: result } = await ok(operator, OpenCaseDocument, {
    input: { title: 'Suspicious behaviour', severity: 'HIGH', deviceIds, ...extra },
  });
  return success(result);
}

/** The audit events about one case, oldest first. */
const auditOf = (number: number) =>
  em().find(AuditEvent, { subject: `case:${number}` }, { orderBy: { seq: 'asc' } });

async function timelineOf(number: number) {
  const { case: record } = await ok(viewer, CaseDocument, { number, first: 500 });
  expect(record!.timeline.totalCount).toBe(record!.timeline.edges.length);
  return record!.timeline.edges.map((edge) => edge.node);
}

/** An automatic case the way attestation, enrollment and risk open them: inside their transaction. */
function openOrAppend(deviceRef: string, source: CaseSource, evidence: Record<string, unknown>) {
  return service.services.transactions.run(em(), (tx) =>
    service.services.cases.openOrAppend(tx, {
      title: `${source} on the device`,
      severity: 'CRITICAL',
      source,
      deviceRef,
      evidence,
      actor: 'system:test',
    }),
  );
}

describe('opening cases', () => {
  it('opens a manual case about several devices, with its first note and assignee', async () => {
    const [first, second] = [await registerDevice('open-a'), await registerDevice('open-b')];
    const opened = await openCase([first.deviceId, second.deviceId], {
      note: 'seen on the SIEM',
      assignee: 'alice',
    });
    expect(opened).toMatchObject({
      status: 'OPEN',
      source: 'MANUAL',
      severity: 'HIGH',
      assignee: 'alice',
      closedAt: null,
      devices: [{ deviceId: first.deviceId }, { deviceId: second.deviceId }],
    });
    expect((await timelineOf(opened.number)).map((event) => event.kind)).toEqual([
      'OPENED',
      'NOTE',
      'ASSIGNED',
    ]);
    expect((await auditOf(opened.number)).map((event) => event.action)).toEqual(['case.opened']);

    // Both devices list it; a second manual case about the same device is allowed (not deduplicated).
    const again = await openCase([second.deviceId]);
    const { device } = await ok(viewer, DeviceCasesDocument, { deviceId: second.deviceId });
    expect(device!.cases.map((record) => record.number)).toEqual([again.number, opened.number]);
  });

  it('names an unknown device and a bad title, and audits both refusals', async () => {
    const { openCase: unknown } = await ok(operator, OpenCaseDocument, {
      input: { title: 'About a ghost', severity: 'LOW', deviceIds: ['no-such-device'] },
    });
    expect(unknown).toMatchObject({ __typename: 'DeviceNotFound', deviceId: 'no-such-device' });
    const { openCase: short } = await ok(operator, OpenCaseDocument, {
      input: { title: ' x ', severity: 'LOW' },
    });
    expect(short).toMatchObject({ __typename: 'ValidationFailed', field: 'title' });
    const refusals = await em().find(AuditEvent, { subject: 'case:new' }, { orderBy: { seq: 'asc' } });
    expect(refusals.map((event) => event.details)).toEqual([
      expect.objectContaining({ operation: 'open', reason: 'device-not-found' }),
      expect.objectContaining({ operation: 'open', reason: 'validation-failed' }),
    ]);
  });

  it('links a further device once', async () => {
    const [first, second] = [await registerDevice('link-a'), await registerDevice('link-b')];
    const opened = await openCase([first.deviceId]);
    const linked = await ok(operator, LinkDeviceToCaseDocument, {
      number: opened.number,
      deviceId: second.deviceId,
    });
    expect(success(linked.linkDeviceToCase).devices.map((device) => device.deviceId)).toEqual([
      first.deviceId,
      second.deviceId,
    ]);
    const twice = await ok(operator, LinkDeviceToCaseDocument, {
      number: opened.number,
      deviceId: second.deviceId,
    });
    expect(twice.linkDeviceToCase.__typename).toBe('Conflict');
  });
});

describe('status transitions', () => {
  it.each<[string, Array<[CaseStatus, string | null, string]>]>([
    [
      'the full life, with a reopen from RESOLVED and one from CLOSED',
      [
        ['INVESTIGATING', null, 'OPEN->INVESTIGATING'],
        ['RESOLVED', 'firmware reflashed', 'INVESTIGATING->RESOLVED'],
        ['INVESTIGATING', 'it failed again', 'RESOLVED->INVESTIGATING'],
        ['RESOLVED', 'replaced the unit', 'INVESTIGATING->RESOLVED'],
        ['CLOSED', null, 'RESOLVED->CLOSED'],
        ['OPEN', 'new information from the vendor', 'CLOSED->OPEN'],
        ['CLOSED', 'duplicate of another investigation', 'OPEN->CLOSED'],
      ],
    ],
    [
      'refusals: skipping steps, staying put, leaving CLOSED other than by OPEN, missing reasons',
      [
        ['RESOLVED', 'done', 'refused OPEN->RESOLVED'],
        ['OPEN', 'again', 'refused OPEN->OPEN'],
        ['INVESTIGATING', null, 'OPEN->INVESTIGATING'],
        ['RESOLVED', null, 'refused reason'],
        ['OPEN', 'back to the queue', 'refused INVESTIGATING->OPEN'],
        ['CLOSED', 'false positive', 'INVESTIGATING->CLOSED'],
        ['INVESTIGATING', 'look again', 'refused CLOSED->INVESTIGATING'],
        ['RESOLVED', 'fixed', 'refused CLOSED->RESOLVED'],
        ['OPEN', null, 'refused reason'],
        ['OPEN', '  ', 'refused reason'],
      ],
    ],
  ])('%s, each step audited', async (_name, steps) => {
    const { number } = await openCase();
    for (const [to, reason, expected] of steps) {
      const before = (await auditOf(number)).length;
      const { setCaseStatus: result } = await ok(operator, SetCaseStatusDocument, {
        number,
        status: to,
        reason,
      });
      const audit = await auditOf(number);
      expect(audit, expected).toHaveLength(before + 1);
      const last = audit.at(-1)!;
      const refusedMove = /^refused (\w+)->(\w+)$/.exec(expected);
      if (refusedMove) {
        expect(result).toMatchObject({
          __typename: 'InvalidTransition',
          from: refusedMove[1],
          to: refusedMove[2],
        });
        expect(last).toMatchObject({
          action: 'case.refused',
          details: { operation: 'set-status', from: refusedMove[1], to: refusedMove[2] },
        });
      } else if (expected === 'refused reason') {
        expect(result).toMatchObject({ __typename: 'ValidationFailed', field: 'reason' });
        expect(last).toMatchObject({ action: 'case.refused', details: { reason: 'validation-failed' } });
      } else {
        const [from] = expected.split('->');
        expect(result).toMatchObject({ __typename: 'MutationSetCaseStatusSuccess', data: { status: to } });
        expect(last).toMatchObject({
          action: 'case.status-changed',
          actor: expect.stringContaining('soc-operator') as unknown,
          details: { from, to, reason: reason?.trim() ?? null },
        });
      }
    }
    const moves = (await timelineOf(number)).filter((event) => event.kind === 'STATUS_CHANGED');
    expect(moves.length).toBe(steps.filter(([, , expected]) => !expected.startsWith('refused')).length);
  });

  it('stamps closedAt when closing and clears it when reopening', async () => {
    const { number } = await openCase();
    const closed = await ok(operator, SetCaseStatusDocument, { number, status: 'CLOSED', reason: 'noise' });
    expect(success(closed.setCaseStatus).closedAt).toEqual(expect.any(String));
    const reopened = await ok(operator, SetCaseStatusDocument, {
      number,
      status: 'OPEN',
      reason: 'not noise',
    });
    expect(success(reopened.setCaseStatus).closedAt).toBeNull();
  });

  it('answers an unknown case with CaseNotFound', async () => {
    const { setCaseStatus } = await ok(operator, SetCaseStatusDocument, {
      number: 987_654,
      status: 'INVESTIGATING',
    });
    expect(setCaseStatus).toMatchObject({ __typename: 'CaseNotFound', number: 987_654 });
  });
});

describe('a closed case', () => {
  it('refuses notes, attachments, assignment and links until it is reopened', async () => {
    const device = await registerDevice('closed');
    const { number } = await openCase();
    await ok(operator, SetCaseStatusDocument, { number, status: 'CLOSED', reason: 'benign' });
    const length = (await timelineOf(number)).length;
    const auditLength = (await auditOf(number)).length;

    const note = await ok(operator, AddCaseNoteDocument, { number, note: 'one more thing' });
    expect(note.addCaseNote).toMatchObject({ __typename: 'InvalidTransition', from: 'CLOSED', to: 'NOTE' });
    const attached = await ok(operator, AttachToCaseDocument, {
      number,
      name: 'inventory.json',
      mediaType: 'application/json',
      content: { firmware: [] },
    });
    expect(attached.attachToCase).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'CLOSED',
      to: 'ATTACHMENT',
    });
    const assigned = await ok(operator, AssignCaseDocument, { number, assignee: 'bob' });
    expect(assigned.assignCase).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'CLOSED',
      to: 'ASSIGNED',
    });
    const linked = await ok(operator, LinkDeviceToCaseDocument, { number, deviceId: device.deviceId });
    expect(linked.linkDeviceToCase).toMatchObject({
      __typename: 'InvalidTransition',
      from: 'CLOSED',
      to: 'DEVICE_LINKED',
    });

    expect(await timelineOf(number)).toHaveLength(length);
    const refusals = (await auditOf(number)).slice(auditLength);
    expect(refusals.map((event) => [event.action, event.details.operation])).toEqual([
      ['case.refused', 'note'],
      ['case.refused', 'attach'],
      ['case.refused', 'assign'],
      ['case.refused', 'link-device'],
    ]);

    await ok(operator, SetCaseStatusDocument, { number, status: 'OPEN', reason: 'it came back' });
    const after = await ok(operator, AddCaseNoteDocument, { number, note: 'one more thing' });
    expect(success(after.addCaseNote)).toMatchObject({ kind: 'NOTE', body: 'one more thing' });
  });
});

describe('notes, attachments and assignment', () => {
  it('keeps all of 20 notes added in parallel, each audited', async () => {
    const { number } = await openCase();
    const notes = Array.from({ length: 20 }, (_, index) => `note ${index}`);
    const results = await Promise.all(
      notes.map((note) => ok(operator, AddCaseNoteDocument, { number, note })),
    );
    for (const result of results) expect(result.addCaseNote.__typename).toBe('MutationAddCaseNoteSuccess');
    const kept = (await timelineOf(number))
      .filter((event) => event.kind === 'NOTE')
      .map((event) => event.body);
    expect(new Set(kept)).toEqual(new Set(notes));
    expect(kept).toHaveLength(20);
    const audited = (await auditOf(number)).filter((event) => event.action === 'case.note-added');
    expect(audited).toHaveLength(20);
  });

  it('attaches a JSON document and refuses other types, scalars and oversized documents', async () => {
    const { number } = await openCase();
    const snapshot = { device: 'plc-1', firmware: [{ component: 'boot', version: '1.2.0' }] };
    const attached = await ok(operator, AttachToCaseDocument, {
      number,
      name: 'firmware inventory',
      mediaType: 'application/vnd.fleetproof.firmware-inventory+json',
      content: snapshot,
    });
    expect(success(attached.attachToCase)).toMatchObject({
      kind: 'ATTACHMENT',
      body: 'firmware inventory',
      attachment: {
        name: 'firmware inventory',
        mediaType: 'application/vnd.fleetproof.firmware-inventory+json',
        size: JSON.stringify(snapshot).length,
        content: snapshot,
      },
    });
    const refused = async (name: string, mediaType: string, content: unknown) =>
      (await ok(operator, AttachToCaseDocument, { number, name, mediaType, content })).attachToCase;
    expect(await refused('x.txt', 'text/plain', { a: 1 })).toMatchObject({ field: 'mediaType' });
    expect(await refused('x.json', 'application/json', 'just a string')).toMatchObject({ field: 'content' });
    expect(await refused('a\nforged log line', 'application/json', {})).toMatchObject({ field: 'name' });
    const big = { blob: 'x'.repeat(130 * 1024) };
    expect(await refused('big.json', 'application/json', big)).toMatchObject({
      __typename: 'ValidationFailed',
      field: 'content',
    });
    expect((await auditOf(number)).map((event) => event.action)).toEqual([
      'case.opened',
      'case.attachment-added',
      'case.refused',
      'case.refused',
      'case.refused',
      'case.refused',
    ]);
  });

  it('assigns and unassigns, recording both on the timeline', async () => {
    const { number } = await openCase();
    const assigned = await ok(operator, AssignCaseDocument, { number, assignee: '  carol ' });
    expect(success(assigned.assignCase).assignee).toBe('carol');
    const unassigned = await ok(operator, AssignCaseDocument, { number, assignee: null });
    expect(success(unassigned.assignCase).assignee).toBeNull();
    const assignments = (await timelineOf(number)).filter((event) => event.kind === 'ASSIGNED');
    expect(assignments.map((event) => event.payload)).toEqual([
      { from: null, to: 'carol' },
      { from: 'carol', to: null },
    ]);
  });
});

describe('automatic cases', () => {
  it('opens one case when 12 transactions race for a device and source, keeping every piece of evidence', async () => {
    const device = await registerDevice('race');
    const opened = await Promise.all(
      Array.from({ length: 12 }, (_, index) => openOrAppend(device.id, 'RISK_CRITICAL', { hit: index })),
    );
    expect(new Set(opened.map((record) => record.number)).size).toBe(1);
    const number = opened[0]!.number;
    expect(await em().count(Case, { deviceRef: device.id, source: 'RISK_CRITICAL' })).toBe(1);
    const timeline = await timelineOf(number);
    // Appenders wait for the opener's commit (row lock), so the opening entry comes first.
    expect(timeline.map((event) => event.kind)).toEqual(['OPENED', ...Array<string>(11).fill('EVIDENCE')]);
    const hits = timeline.map((event) => {
      const payload = event.payload as { evidence: { hit: number } };
      return payload.evidence.hit;
    });
    expect(hits.sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, index) => index));
    expect((await auditOf(number)).map((event) => event.action)).toEqual(['case.opened']);
  });

  it('is enforced by the database: a second open case for a device and source cannot be inserted', async () => {
    const device = await registerDevice('index');
    const record = await openOrAppend(device.id, 'UNRESPONSIVE', {});
    const insert = em()
      .getConnection()
      .execute(
        `insert into "case_record" ("id", "title", "severity", "status", "source", "device_ref", "opened_at", "updated_at")
         values (gen_random_uuid(), 'twin', 'LOW', 'INVESTIGATING', 'UNRESPONSIVE', ?, now(), now())`,
        [device.id],
      );
    await expect(insert).rejects.toThrow(/case_record_one_open/);
    expect(record.status).toBe('OPEN');
  });

  it('sends a RESOLVED case back to INVESTIGATING on new evidence; after CLOSED a new case opens', async () => {
    const device = await registerDevice('recur');
    const { number } = await openOrAppend(device.id, 'ATTESTATION_FAILURE', {
      reasons: ['FIRMWARE_MISMATCH'],
    });
    await ok(operator, SetCaseStatusDocument, { number, status: 'INVESTIGATING' });
    await ok(operator, SetCaseStatusDocument, { number, status: 'RESOLVED', reason: 'reflashed' });

    expect(
      (await openOrAppend(device.id, 'ATTESTATION_FAILURE', { reasons: ['SIGNATURE_INVALID'] })).number,
    ).toBe(number);
    const recurred = await timelineOf(number);
    expect(recurred.slice(-2)).toMatchObject([
      { kind: 'EVIDENCE', payload: { evidence: { reasons: ['SIGNATURE_INVALID'] } } },
      { kind: 'STATUS_CHANGED', actor: 'system:test', payload: { from: 'RESOLVED', to: 'INVESTIGATING' } },
    ]);
    expect((await auditOf(number)).at(-1)).toMatchObject({
      action: 'case.status-changed',
      details: { from: 'RESOLVED', to: 'INVESTIGATING' },
    });

    await ok(operator, SetCaseStatusDocument, { number, status: 'RESOLVED', reason: 'replaced' });
    await ok(operator, SetCaseStatusDocument, { number, status: 'CLOSED' });
    const next = await openOrAppend(device.id, 'ATTESTATION_FAILURE', { reasons: ['FIRMWARE_MISMATCH'] });
    expect(next.number).not.toBe(number);

    // Reopening the old one would make two open cases for the device and source.
    const reopen = await ok(operator, SetCaseStatusDocument, {
      number,
      status: 'OPEN',
      reason: 'same root cause',
    });
    expect(reopen.setCaseStatus).toMatchObject({ __typename: 'Conflict' });
    expect((await auditOf(number)).at(-1)).toMatchObject({
      action: 'case.refused',
      details: { reason: 'case-already-open' },
    });
  });
});

describe('reading cases', () => {
  const assignee = unique('pager');
  const numbers: number[] = [];

  beforeAll(async () => {
    for (let index = 0; index < 5; index++) numbers.unshift((await openCase([], { assignee })).number);
  });

  const page = (variables: CasesQueryVariables = {}) =>
    ok(viewer, CasesDocument, { ...variables, filter: { assignee, ...variables.filter } });
  const numbersOf = (result: Awaited<ReturnType<typeof page>>) =>
    result.cases.edges.map((edge) => edge.node.number);

  it('pages forward newest first with a stable cursor, to an exact last page', async () => {
    const first = await page({ first: 2 });
    expect(numbersOf(first)).toEqual(numbers.slice(0, 2));
    expect(first.cases.totalCount).toBe(5);
    expect(first.cases.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const second = await page({ first: 2, after: first.cases.pageInfo.endCursor });
    expect(numbersOf(second)).toEqual(numbers.slice(2, 4));
    const last = await page({ first: 2, after: second.cases.pageInfo.endCursor });
    expect(numbersOf(last)).toEqual(numbers.slice(4));
    expect(last.cases.pageInfo.hasNextPage).toBe(false);
    const exact = await page({ first: 5 });
    expect(numbersOf(exact)).toEqual(numbers);
    expect(exact.cases.pageInfo.hasNextPage).toBe(false);
    const past = await page({ first: 2, after: last.cases.pageInfo.endCursor });
    expect(numbersOf(past)).toEqual([]);
    expect(past.cases.pageInfo.hasNextPage).toBe(false);
  });

  it('pages backward with last and before', async () => {
    const oldest = await page({ last: 2 });
    expect(numbersOf(oldest)).toEqual(numbers.slice(3));
    expect(oldest.cases.pageInfo).toMatchObject({ hasPreviousPage: true });
    const before = await page({ last: 2, before: oldest.cases.pageInfo.startCursor });
    expect(numbersOf(before)).toEqual(numbers.slice(1, 3));
  });

  it('answers an empty filter with no edges and a zero count', async () => {
    const none = await page({ first: 10, filter: { assignee: unique('nobody') } });
    expect(none.cases).toMatchObject({
      totalCount: 0,
      edges: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false },
    });
  });

  it('refuses a foreign or malformed cursor with a typed error', async () => {
    for (const after of ['not-a-cursor', encodeCursor('device', 'plc-1'), encodeCursor('case', '1; drop')]) {
      const body = await send(viewer, CasesDocument, { after });
      expect(body.data ?? null).toBeNull();
      expect(body.errors?.[0]?.extensions?.code).toBe('INVALID_CURSOR');
    }
  });

  it('filters by status, source, severity and device', async () => {
    const device = await registerDevice('filter');
    const manual = await openCase([device.deviceId]);
    await ok(operator, SetCaseStatusDocument, { number: manual.number, status: 'INVESTIGATING' });
    const automatic = await openOrAppend(device.id, 'UNRESPONSIVE', {});
    const of = async (filter: Record<string, unknown>) =>
      numbersOf(await ok(viewer, CasesDocument, { filter: { deviceId: device.deviceId, ...filter } }));
    expect(await of({})).toEqual([automatic.number, manual.number]);
    expect(await of({ status: ['INVESTIGATING'] })).toEqual([manual.number]);
    expect(await of({ source: ['UNRESPONSIVE'] })).toEqual([automatic.number]);
    expect(await of({ severity: ['CRITICAL'] })).toEqual([automatic.number]);
    expect(await of({ severity: ['LOW'] })).toEqual([]);
    const { device: read } = await ok(viewer, DeviceCasesDocument, {
      deviceId: device.deviceId,
      status: ['OPEN'],
    });
    expect(read!.cases.map((record) => record.number)).toEqual([automatic.number]);
  });

  it('pages a timeline with its entry cursors', async () => {
    const { number } = await openCase();
    for (const note of ['a', 'b', 'c']) await ok(operator, AddCaseNoteDocument, { number, note });
    const first = await ok(viewer, CaseDocument, { number, first: 2 });
    expect(first.case!.timeline.edges.map((edge) => edge.node.kind)).toEqual(['OPENED', 'NOTE']);
    const rest = await ok(viewer, CaseDocument, {
      number,
      first: 10,
      after: first.case!.timeline.pageInfo.endCursor,
    });
    expect(rest.case!.timeline.edges.map((edge) => edge.node.body)).toEqual(['b', 'c']);
    expect(rest.case!.timeline.pageInfo.hasNextPage).toBe(false);
  });

  it('loads the cases and linked devices of a page of devices in a fixed number of statements', async () => {
    const prefix = unique('batch');
    for (let index = 0; index < 30; index++) {
      const { device } = await service.services.inventory.register(
        em(),
        { device_id: `${prefix}-${String(index).padStart(2, '0')}`, device_type: 'RTU' },
        'test',
      );
      await openOrAppend(device.id, 'UNRESPONSIVE', {});
    }
    const execute = vi.spyOn(service.services.database.orm.em.getConnection(), 'execute');
    try {
      const { status, body } = await graphql<{ devices: { edges: Array<{ node: { cases: unknown[] } }> } }>(
        service.app.urls.graphql,
        viewer,
        `{ devices(first: 30, filter: { deviceIdPrefix: "${prefix}" }) {
            edges { node { deviceId cases(status: [OPEN]) { number devices { deviceId } } } } } }`,
      );
      expect(status).toBe(200);
      expect(body.data!.devices.edges.map((edge) => edge.node.cases.length)).toEqual(
        Array<number>(30).fill(1),
      );
      const sql = execute.mock.calls.map((call) => (typeof call[0] === 'string' ? call[0] : ''));
      // One statement for the cases of the 30 devices, one for the links of those cases.
      expect(sql.filter((text) => /"case_record"|"case_device"/.test(text))).toHaveLength(2);
    } finally {
      execute.mockRestore();
    }
  });
});

describe('authorization', () => {
  it('lets a viewer read but not change cases', async () => {
    const { number } = await openCase();
    const attempts = [
      send(viewer, OpenCaseDocument, { input: { title: 'from a viewer', severity: 'LOW' } }),
      send(viewer, AddCaseNoteDocument, { number, note: 'from a viewer' }),
      send(viewer, AttachToCaseDocument, { number, name: 'x', mediaType: 'application/json', content: {} }),
      send(viewer, AssignCaseDocument, { number, assignee: 'viewer' }),
      send(viewer, LinkDeviceToCaseDocument, { number, deviceId: 'any' }),
      send(viewer, SetCaseStatusDocument, { number, status: 'CLOSED', reason: 'from a viewer' }),
    ];
    for (const body of await Promise.all(attempts)) {
      expect(body.data ?? null).toBeNull();
      expect(body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    }
    expect((await timelineOf(number)).map((event) => event.kind)).toEqual(['OPENED']);
    expect(await em().count(CaseEvent, { actor: { $like: 'token:dashboard/%' } })).toBe(0);
  });
});

describe('caseEvents subscription', () => {
  let client: Client;

  beforeAll(() => {
    client = wsClient(service.app.urls.graphql, viewer);
  });

  afterAll(async () => {
    await client?.dispose();
  });

  it('delivers a note on a watched device as it commits, and nothing about other cases', async () => {
    const device = await registerDevice('live');
    const { number } = await openCase([device.deviceId]);
    const other = await openCase();
    const feed = new LiveFeed(
      client,
      { query: print(CaseEventsLiveDocument), variables: { filter: { deviceId: device.deviceId } } },
      ({ caseEvents: item }: CaseEventsLiveSubscription) => {
        if (item.__typename !== 'CaseEvent')
          throw new Error(`a reading subscriber missed ${item.dropped} events`);
        return item;
      },
    );
    await feed.untilLive(
      (event) => event.body?.startsWith('probe') ?? false,
      async (attempt) => {
        await ok(operator, AddCaseNoteDocument, { number, note: `probe ${attempt}` });
      },
    );

    await ok(operator, AddCaseNoteDocument, { number: other.number, note: 'not about the device' });
    await ok(operator, AddCaseNoteDocument, { number, note: 'PLC answered from a new address' });
    const note = await feed.waitFor((event) => event.body === 'PLC answered from a new address');
    expect(note).toMatchObject({
      kind: 'NOTE',
      actor: expect.stringContaining('soc-operator') as unknown,
      case: { number, status: 'OPEN', devices: [{ deviceId: device.deviceId }] },
    });
    // Delivered in commit order: the other case's note, committed first, was filtered out.
    expect(feed.received.some((event) => event.case.number === other.number)).toBe(false);

    // The event's cursor resumes the timeline right after it.
    const rest = await ok(viewer, CaseDocument, { number, first: 10, after: note.cursor });
    expect(rest.case!.timeline.edges).toEqual([]);
    await feed.close();
  });
});
