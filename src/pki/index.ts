export { PkiError, type PkiErrorCode } from './pki.errors.js';
export type { Signer, SignatureAlgorithmName } from './signer.port.js';
export { createSoftwareSigner } from './software.signer.js';
export {
  loadOrCreateCertificateAuthority,
  CA_FILES,
  type CertificateAuthorityOptions,
  type PkiLogger,
} from './ca.store.js';
export {
  createCertificateAuthority,
  type CertificateAuthority,
  type CertificateAuthorityParts,
  type CrlRequest,
  type DeviceCertificateRequest,
  type IssuedCredential,
  type IssuedDeviceCertificate,
  type RevokedCertificate,
  type ServerCertificateRequest,
} from './certificate-authority.js';
export type { ChainFailure, ChainVerification } from './chain.verifier.js';
export { decodeCsr, verifyCsr, type CsrKey, type ParsedCsr, type RequestedExtension } from './csr.codec.js';
export { SERVICE_COMMON_NAME, SERVICE_URI } from './issuance.profiles.js';
export { certificatesPkcs7 } from './pkcs7.codec.js';
export { derToPem, pemToDer, sha256Hex, toBase64Lines } from './encoding.helpers.js';
export { spkiSha256Hex } from './public-key.helpers.js';
export { certificateCommonName } from './certificate.reader.js';
export { CSR_ATTRIBUTES_DER } from './csr-attributes.js';
export { requestedSanUris } from './requested-san.js';
