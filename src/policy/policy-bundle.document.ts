import { z } from 'zod';
import { CRITICALITIES, DEVICE_TYPES } from '../devices/device.entity.js';
import { SHA256_REF_PATTERN } from '../shared/identifiers.js';
import { ValidationError } from '../shared/errors.js';

export const RISK_FACTOR_KINDS = ['FIRMWARE_DRIFT', 'TELEMETRY_ANOMALY', 'IOC_HIT', 'ATTESTATION'] as const;
export type RiskFactorKind = (typeof RISK_FACTOR_KINDS)[number];

export const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

const firmwareVersionSchema = z.object({
  version: z.string().trim().min(1).max(100),
  hash: z.string().regex(SHA256_REF_PATTERN, "must be 'sha256:' and 64 lowercase hex"),
});

const modelFirmwareSchema = z
  .object({
    /** Oldest first: "versions behind" counts positions towards `latest`. */
    versions: z.array(firmwareVersionSchema).min(1).max(500),
    latest: z.string().trim().min(1).max(100),
  })
  .superRefine((model, context) => {
    const versions = model.versions.map((entry) => entry.version);
    if (!versions.includes(model.latest))
      context.addIssue({ code: 'custom', path: ['latest'], message: 'must name one of the listed versions' });
    versions.forEach((version, index) => {
      if (versions.indexOf(version) !== index)
        context.addIssue({ code: 'custom', path: ['versions', index, 'version'], message: 'listed twice' });
    });
  });

const telemetryRuleSchema = z
  .object({
    metric: z.string().trim().min(1).max(100),
    min: z.number().finite().optional(),
    max: z.number().finite().optional(),
    severity: z.enum(SEVERITIES).default('MEDIUM'),
  })
  .refine((rule) => rule.min !== undefined || rule.max !== undefined, {
    message: 'needs min, max or both',
    path: ['min'],
  })
  .refine((rule) => rule.min === undefined || rule.max === undefined || rule.min <= rule.max, {
    message: 'must not exceed max',
    path: ['min'],
  });

const weightsSchema = z.object(
  Object.fromEntries(RISK_FACTOR_KINDS.map((kind) => [kind, z.number().min(0).max(10)])) as Record<
    RiskFactorKind,
    z.ZodNumber
  >,
);

/**
 * A policy bundle for one device type: immutable once published, versioned per type. This schema is
 * the contract (printed as JSON Schema to schema/policy-bundle.schema.json for whoever writes bundles).
 */
export const policyBundleDocumentSchema = z
  .object({
    defaultCriticality: z.enum(CRITICALITIES),
    /** Approved firmware per model: version -> hash, with the latest marked. */
    firmware: z.record(z.string().trim().min(1).max(200), modelFirmwareSchema),
    risk: z.object({
      /** Multipliers per factor kind, applied to the severity's points. */
      weights: weightsSchema,
      /** Points a factor of each severity contributes at weight 1, before decay. */
      severityPoints: z.object(
        Object.fromEntries(SEVERITIES.map((severity) => [severity, z.number().min(0).max(100)])) as Record<
          Severity,
          z.ZodNumber
        >,
      ),
      /** Reported factors (telemetry, IOC, attestation) lose half their contribution every this many hours. */
      halfLifeHours: z
        .number()
        .positive()
        .max(24 * 365),
      /** A firmware drift of this many versions behind latest counts as HIGH (fewer: LOW, MEDIUM). */
      driftHighAtVersionsBehind: z.number().int().min(1).max(100).default(3),
    }),
    telemetry: z.object({
      rules: z.array(telemetryRuleSchema).max(200).default([]),
      /** Messages a device may send per minute; a flood is an anomaly in itself. */
      maxMessagesPerMinute: z.number().int().positive().max(100_000).default(120),
    }),
    /** After this many days the bundle is stale: health and the score's trail say so. */
    maxAgeDays: z.number().int().positive().max(3650),
  })
  .strict();

export type PolicyBundleDocument = z.infer<typeof policyBundleDocumentSchema>;
export type TelemetryRule = PolicyBundleDocument['telemetry']['rules'][number];

export const POLICY_DEVICE_TYPES = DEVICE_TYPES;

/** Validates an untrusted bundle; the first problem names its field path (e.g. `firmware.X200.latest`). */
export function parsePolicyBundleDocument(input: unknown): PolicyBundleDocument {
  const parsed = policyBundleDocumentSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new ValidationError(
    ['document', ...issue.path.map(String)].join('.'),
    issue.message,
    'invalid-policy-bundle',
  );
}

/**
 * What scores a device type before any bundle is published: no approved firmware list (so no drift
 * and no unvetted factor), moderate weights, a week's half-life. Never stale: it is not a bundle.
 */
export const DEFAULT_POLICY: PolicyBundleDocument = {
  defaultCriticality: 'standard',
  firmware: {},
  risk: {
    weights: { FIRMWARE_DRIFT: 1, TELEMETRY_ANOMALY: 1, IOC_HIT: 1.5, ATTESTATION: 1 },
    severityPoints: { LOW: 5, MEDIUM: 15, HIGH: 35, CRITICAL: 60 },
    halfLifeHours: 168,
    driftHighAtVersionsBehind: 3,
  },
  telemetry: { rules: [], maxMessagesPerMinute: 120 },
  maxAgeDays: 36500,
};
