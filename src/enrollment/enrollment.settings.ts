/** Enrollment knobs that deployments may tune; defaults follow the runbook. */
export interface EnrollmentSettings {
  ottLifetimeSeconds: number;
  certificateValidityDays: number;
  /** RFC 7030 3.5: refuse CSRs that do not carry the TLS channel binding in challengePassword. */
  requireChannelBinding: boolean;
  ottRateLimit: { perDevice: number; perAddress: number; windowSeconds: number };
}

export const DEFAULT_ENROLLMENT_SETTINGS: EnrollmentSettings = {
  ottLifetimeSeconds: 60,
  certificateValidityDays: 30,
  requireChannelBinding: false,
  ottRateLimit: { perDevice: 5, perAddress: 60, windowSeconds: 60 },
};
