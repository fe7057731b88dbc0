/**
 * The MQTT topic table: the one place that knows topic names (schema/asyncapi.yaml documents the same
 * table for device makers). Builders, the parser and the broker's access rules are all derived from it.
 */

import { DEVICE_ID_PATTERN, isValidDeviceId } from '../shared/identifiers.js';

export { DEVICE_ID_PATTERN, isValidDeviceId };

/** Site ids are topic levels too; same rules and the same reasons as device ids. */
export const SITE_ID_PATTERN = DEVICE_ID_PATTERN;

export function isValidSiteId(id: string): boolean {
  return SITE_ID_PATTERN.test(id);
}

/** Who publishes on a topic and who subscribes to it. */
export type TopicParty = 'device' | 'service' | 'site-controller';

interface TopicSpec {
  /** Levels joined by `/`; `{device_id}` and `{site_id}` are placeholders for one level each. */
  readonly template: string;
  readonly publisher: TopicParty;
  readonly subscriber: TopicParty;
}

export const TOPIC_TABLE = {
  /** Signed attestation evidence for a challenge. */
  attestResponse: {
    template: 'cps/attest/response/{device_id}',
    publisher: 'device',
    subscriber: 'service',
  },
  /** Runbook compatibility: no id in the topic, attribution rests on the signature alone. */
  attestResponseBare: { template: 'cps/attest/response', publisher: 'device', subscriber: 'service' },
  attestChallenge: {
    template: 'cps/attest/challenge/{device_id}',
    publisher: 'service',
    subscriber: 'device',
  },
  enroll: { template: 'cps/enroll/{device_id}', publisher: 'device', subscriber: 'service' },
  enrollOtt: { template: 'cps/enroll/{device_id}/ott', publisher: 'service', subscriber: 'device' },
  telemetry: { template: 'cps/telemetry/{device_id}', publisher: 'device', subscriber: 'service' },
  siteHeartbeat: {
    template: 'cps/site/{site_id}/heartbeat',
    publisher: 'site-controller',
    subscriber: 'service',
  },
} as const satisfies Record<string, TopicSpec>;

export type TopicKind = keyof typeof TOPIC_TABLE;

export class InvalidTopicIdError extends Error {
  override readonly name = 'InvalidTopicIdError';
  constructor(
    readonly placeholder: 'device_id' | 'site_id',
    readonly value: string,
  ) {
    super(`invalid ${placeholder} for an MQTT topic: ${JSON.stringify(value.slice(0, 140))}`);
  }
}

function deviceLevel(deviceId: string): string {
  // Refuse rather than escape: an unchecked id could inject levels or wildcards into the topic.
  if (!isValidDeviceId(deviceId)) throw new InvalidTopicIdError('device_id', deviceId);
  return deviceId;
}

function siteLevel(siteId: string): string {
  if (!isValidSiteId(siteId)) throw new InvalidTopicIdError('site_id', siteId);
  return siteId;
}

/** Topic builders; they throw InvalidTopicIdError for an id outside DEVICE_ID_PATTERN / SITE_ID_PATTERN. */
export const topics = {
  attestResponse: (deviceId: string) => `cps/attest/response/${deviceLevel(deviceId)}`,
  attestResponseBare: () => TOPIC_TABLE.attestResponseBare.template,
  attestChallenge: (deviceId: string) => `cps/attest/challenge/${deviceLevel(deviceId)}`,
  enroll: (deviceId: string) => `cps/enroll/${deviceLevel(deviceId)}`,
  enrollOtt: (deviceId: string) => `cps/enroll/${deviceLevel(deviceId)}/ott`,
  telemetry: (deviceId: string) => `cps/telemetry/${deviceLevel(deviceId)}`,
  siteHeartbeat: (siteId: string) => `cps/site/${siteLevel(siteId)}/heartbeat`,
} as const satisfies Record<TopicKind, (id: string) => string>;

/** Filters the service subscribes to: every topic whose subscriber is the service, ids as `+`. */
export const serviceTopicFilters = {
  attestResponse: 'cps/attest/response/+',
  attestResponseBare: 'cps/attest/response',
  enroll: 'cps/enroll/+',
  telemetry: 'cps/telemetry/+',
  siteHeartbeat: 'cps/site/+/heartbeat',
} as const satisfies Partial<Record<TopicKind, string>>;

export type ParsedTopic =
  | { kind: 'attestResponse'; deviceId: string }
  | { kind: 'attestResponseBare' }
  | { kind: 'attestChallenge'; deviceId: string }
  | { kind: 'enroll'; deviceId: string }
  | { kind: 'enrollOtt'; deviceId: string }
  | { kind: 'telemetry'; deviceId: string }
  | { kind: 'siteHeartbeat'; siteId: string };

interface CompiledTemplate {
  kind: TopicKind;
  levels: readonly string[];
}

const COMPILED: readonly CompiledTemplate[] = (Object.keys(TOPIC_TABLE) as TopicKind[]).map((kind) => ({
  kind,
  levels: TOPIC_TABLE[kind].template.split('/'),
}));

/**
 * Parses a concrete topic name (not a filter) into its kind and id; null for anything that is not in
 * the table or carries an id outside the pattern (so wildcards and extra levels never parse).
 */
export function parseTopic(topic: string): ParsedTopic | null {
  const levels = topic.split('/');
  for (const { kind, levels: template } of COMPILED) {
    if (template.length !== levels.length) continue;
    let deviceId: string | undefined;
    let siteId: string | undefined;
    let matched = true;
    for (let i = 0; i < template.length && matched; i++) {
      const expected = template[i];
      const actual = levels[i] ?? '';
      if (expected === '{device_id}') {
        if (isValidDeviceId(actual)) deviceId = actual;
        else matched = false;
      } else if (expected === '{site_id}') {
        if (isValidSiteId(actual)) siteId = actual;
        else matched = false;
      } else if (expected !== actual) {
        matched = false;
      }
    }
    if (!matched) continue;
    if (kind === 'attestResponseBare') return { kind };
    if (kind === 'siteHeartbeat') return siteId === undefined ? null : { kind, siteId };
    return deviceId === undefined ? null : { kind, deviceId };
  }
  return null;
}

/** The device id a topic belongs to, if it is a per-device topic. */
export function deviceIdOf(parsed: ParsedTopic): string | undefined {
  return 'deviceId' in parsed ? parsed.deviceId : undefined;
}

/**
 * MQTT topic filter matching (MQTT-4.7): `+` one level, `#` the rest (including the parent level);
 * filters starting with a wildcard do not match `$` topics (MQTT-4.7.2-1). A `$share/{group}/` prefix
 * (MQTT 5 shared subscriptions) is ignored for matching.
 */
export function topicMatchesFilter(filter: string, topic: string): boolean {
  let effective = filter;
  if (effective.startsWith('$share/')) {
    const rest = effective.indexOf('/', '$share/'.length);
    if (rest < 0) return false;
    effective = effective.slice(rest + 1);
  }
  if (topic.startsWith('$') && (effective.startsWith('+') || effective.startsWith('#'))) return false;
  const f = effective.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
