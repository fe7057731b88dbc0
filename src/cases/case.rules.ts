import { canonicalJson } from '../shared/jcs.js';
import { InvalidTransitionError, ValidationError } from '../shared/errors.js';
import type { CaseEventKind } from './case-event.entity.js';
import type { CaseSource, CaseStatus } from './case.entity.js';

/**
 * The statuses in which a case is still "the open case" of its device and source. RESOLVED counts: a
 * fix is believed done but not yet confirmed, so a recurrence belongs to the same investigation (it
 * goes back to INVESTIGATING) instead of a new case that would split its history. Only CLOSED is
 * final. The unique index `case_record_one_open` has the same predicate.
 */
export const DEDUPLICATED_STATUSES = [
  'OPEN',
  'INVESTIGATING',
  'RESOLVED',
] as const satisfies readonly CaseStatus[];

/** Automatic sources are deduplicated; an operator may open several manual cases about one device. */
export function isDeduplicated(source: CaseSource): boolean {
  return source !== 'MANUAL';
}

export function countsAsOpen(status: CaseStatus): boolean {
  return (DEDUPLICATED_STATUSES as readonly CaseStatus[]).includes(status);
}

/**
 * Every legal status change, and whether it needs a reason. Dismissing, resolving and reopening are
 * decisions someone must be able to explain later; CLOSED -> OPEN is the only way back into a closed
 * case.
 */
const TRANSITIONS: Record<CaseStatus, Partial<Record<CaseStatus, { reason: boolean }>>> = {
  OPEN: { INVESTIGATING: { reason: false }, CLOSED: { reason: true } },
  INVESTIGATING: { RESOLVED: { reason: true }, CLOSED: { reason: true } },
  RESOLVED: { CLOSED: { reason: false }, INVESTIGATING: { reason: true } },
  CLOSED: { OPEN: { reason: true } },
};

/** Checks a status change; returns the reason to record (trimmed), or null when none was given. */
export function checkTransition(from: CaseStatus, to: CaseStatus, reason: string | null): string | null {
  const move = TRANSITIONS[from][to];
  if (!move) throw new InvalidTransitionError(from, to);
  if (reason === null || reason.trim() === '') {
    if (move.reason) throw new ValidationError('reason', `a reason is required to go from ${from} to ${to}`);
    return null;
  }
  return requireText('reason', reason, 3, 500);
}

/** A closed case is a record: it is reopened (CLOSED -> OPEN, with a reason) before anything is added. */
export function assertEditable(status: CaseStatus, edit: CaseEventKind): void {
  if (status === 'CLOSED') {
    throw new InvalidTransitionError(
      'CLOSED',
      edit,
      `the case is closed: reopen it (status OPEN with a reason) before ${edit.toLowerCase().replaceAll('_', ' ')}`,
    );
  }
}

export function requireText(field: string, value: string, min: number, max: number): string {
  const trimmed = value.trim();
  if (trimmed.length < min || trimmed.length > max)
    throw new ValidationError(field, `${min}-${max} characters are required`);
  return trimmed;
}

/** An assignee is a name (an operator, a team); null or blank unassigns. */
export function normalizeAssignee(assignee: string | null): string | null {
  if (assignee === null || assignee.trim() === '') return null;
  return requireText('assignee', assignee, 1, 200);
}

export const ATTACHMENT_MAX_BYTES = 128 * 1024;
// JSON only (application/json or a +json structured syntax suffix, RFC 6839): the content is stored
// and served as JSON, so any other type would be a label that lies about it.
const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9][a-z0-9!#$&^_.-]{0,100}\+)?json$/;

export interface Attachment {
  name: string;
  mediaType: string;
  /** Bytes of the canonical (RFC 8785) JSON form, the form the limit applies to. */
  size: number;
  content: unknown;
}

/** Checks a JSON document attached to a case (a firmware inventory snapshot, a SIEM export, ...). */
export function checkAttachment(name: string, mediaType: string, content: unknown): Attachment {
  const cleanName = requireText('name', name, 1, 200);
  // Names are shown in dashboards and logs: no control characters that could forge lines.
  if (/\p{Cc}/u.test(cleanName)) throw new ValidationError('name', 'control characters are not allowed');
  const type = mediaType.trim().toLowerCase();
  if (!JSON_MEDIA_TYPE.test(type))
    throw new ValidationError(
      'mediaType',
      'a JSON media type (application/json or application/*+json) is required',
    );
  if (content === null || typeof content !== 'object')
    throw new ValidationError('content', 'a JSON object or array is required');
  const size = Buffer.byteLength(canonicalJson(content), 'utf8');
  if (size > ATTACHMENT_MAX_BYTES)
    throw new ValidationError(
      'content',
      `the document is ${size} bytes; at most ${ATTACHMENT_MAX_BYTES} are allowed`,
    );
  return { name: cleanName, mediaType: type, size, content };
}
