import { z } from 'zod';
import { DEVICE_ID_PATTERN, SHA256_HEX_PATTERN, SHA256_REF_PATTERN } from '../shared/identifiers.js';
import { ValidationError } from '../shared/errors.js';
import { CRITICALITIES, DEVICE_TYPES } from './device.entity.js';

const optionalText = (max: number) =>
  z
    .string()
    .trim()
    .max(max)
    .transform((value) => (value === '' ? undefined : value))
    .optional()
    .nullable();

/** One inventory row, in the runbook's snake_case field names (REST, CSV and JSON lines). */
export const deviceRegistrationSchema = z.object({
  device_id: z
    .string()
    .regex(DEVICE_ID_PATTERN, 'must be 1-64 of A-Z a-z 0-9 . _ : - starting with a letter or digit'),
  device_type: z.enum(DEVICE_TYPES),
  model: optionalText(200),
  site: z.string().regex(DEVICE_ID_PATTERN, 'must be 1-64 of A-Z a-z 0-9 . _ : -').optional().nullable(),
  criticality: z.enum(CRITICALITIES).optional().nullable(),
  expected_cdi_commitment: z
    .string()
    .regex(SHA256_REF_PATTERN, "must be 'sha256:' and 64 lowercase hex")
    .optional()
    .nullable(),
  expected_spki_sha256: z
    .string()
    .regex(SHA256_HEX_PATTERN, 'must be 64 lowercase hex')
    .optional()
    .nullable(),
  golden_firmware_hash: z
    .string()
    .regex(SHA256_REF_PATTERN, "must be 'sha256:' and 64 lowercase hex")
    .optional()
    .nullable(),
});

export type DeviceRegistrationInput = z.infer<typeof deviceRegistrationSchema>;

/** Validates untrusted input; the first problem becomes a ValidationError naming the field. */
export function parseRegistration(input: unknown): DeviceRegistrationInput {
  const parsed = deviceRegistrationSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new ValidationError(issue.path.join('.') || 'input', issue.message);
}
