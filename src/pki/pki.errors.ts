/**
 * Stable codes the adapters map to responses (REST renders the CSR_* and INVALID_INPUT codes as
 * HTTP 400 problem types); the message is for logs and operators, the code is the contract.
 */
export type PkiErrorCode =
  | 'DER_MALFORMED'
  | 'CSR_UNDECODABLE'
  | 'CSR_AMBIGUOUS_SUBJECT'
  | 'CSR_BAD_SIGNATURE'
  | 'CSR_WEAK_KEY'
  | 'CSR_UNSUPPORTED_KEY'
  | 'CSR_WEAK_SIGNATURE_ALGORITHM'
  | 'CSR_UNSUPPORTED_SIGNATURE_ALGORITHM'
  | 'INVALID_INPUT'
  | 'CA_PASSPHRASE_MISSING'
  | 'CA_PASSPHRASE_INVALID'
  | 'CA_STORE_CORRUPT';

export class PkiError extends Error {
  override readonly name = 'PkiError';

  constructor(
    readonly code: PkiErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
