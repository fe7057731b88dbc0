import { describe, expect, it } from 'vitest';
import {
  InvalidTopicIdError,
  isValidDeviceId,
  parseTopic,
  serviceTopicFilters,
  TOPIC_TABLE,
  topicMatchesFilter,
  topics,
} from '../../../src/mqtt/topics.js';

describe('topic table', () => {
  it('builds and parses every topic in the table', () => {
    expect(topics.attestResponse('dev-1')).toBe('cps/attest/response/dev-1');
    expect(topics.attestResponseBare()).toBe('cps/attest/response');
    expect(topics.attestChallenge('dev-1')).toBe('cps/attest/challenge/dev-1');
    expect(topics.enroll('dev-1')).toBe('cps/enroll/dev-1');
    expect(topics.enrollOtt('dev-1')).toBe('cps/enroll/dev-1/ott');
    expect(topics.telemetry('dev-1')).toBe('cps/telemetry/dev-1');
    expect(topics.siteHeartbeat('site-7')).toBe('cps/site/site-7/heartbeat');

    expect(parseTopic('cps/attest/response/dev-1')).toEqual({ kind: 'attestResponse', deviceId: 'dev-1' });
    expect(parseTopic('cps/attest/response')).toEqual({ kind: 'attestResponseBare' });
    expect(parseTopic('cps/attest/challenge/dev-1')).toEqual({ kind: 'attestChallenge', deviceId: 'dev-1' });
    expect(parseTopic('cps/enroll/dev-1')).toEqual({ kind: 'enroll', deviceId: 'dev-1' });
    expect(parseTopic('cps/enroll/dev-1/ott')).toEqual({ kind: 'enrollOtt', deviceId: 'dev-1' });
    expect(parseTopic('cps/telemetry/dev-1')).toEqual({ kind: 'telemetry', deviceId: 'dev-1' });
    expect(parseTopic('cps/site/site-7/heartbeat')).toEqual({ kind: 'siteHeartbeat', siteId: 'site-7' });
    expect(Object.keys(TOPIC_TABLE).sort()).toEqual(Object.keys(topics).sort());
  });

  it('rejects ids that could inject levels or wildcards', () => {
    for (const id of ['', '+', '#', 'a/b', '$SYS', '-lead', 'a b', 'é', 'x'.repeat(65), 'a\u0000']) {
      expect(isValidDeviceId(id)).toBe(false);
      expect(() => topics.telemetry(id)).toThrow(InvalidTopicIdError);
    }
    expect(isValidDeviceId('urn:dev.1_A-b')).toBe(true);
    expect(isValidDeviceId('x'.repeat(64))).toBe(true); // X.509 ub-common-name: the id is the certificate CN
  });

  it('does not parse unknown topics, filters or extra levels', () => {
    for (const topic of [
      'cps/telemetry/+',
      'cps/telemetry/#',
      'cps/telemetry/a/b',
      'cps/telemetry/',
      'cps/enroll/dev-1/ott/x',
      'cps/other/dev-1',
      '$SYS/broker',
    ]) {
      expect(parseTopic(topic)).toBeNull();
    }
  });

  it('matches MQTT topic filters', () => {
    expect(topicMatchesFilter(serviceTopicFilters.telemetry, 'cps/telemetry/dev-1')).toBe(true);
    expect(topicMatchesFilter(serviceTopicFilters.telemetry, 'cps/telemetry/dev-1/x')).toBe(false);
    expect(topicMatchesFilter(serviceTopicFilters.siteHeartbeat, 'cps/site/s1/heartbeat')).toBe(true);
    expect(topicMatchesFilter('cps/#', 'cps')).toBe(true);
    expect(topicMatchesFilter('cps/#', 'cps/a/b')).toBe(true);
    expect(topicMatchesFilter('#', '$SYS/x')).toBe(false);
    expect(topicMatchesFilter('$share/g/cps/telemetry/+', 'cps/telemetry/d')).toBe(true);
    expect(topicMatchesFilter(serviceTopicFilters.attestResponseBare, 'cps/attest/response/d')).toBe(false);
  });
});
