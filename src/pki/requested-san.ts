import { AsnConvert } from '@peculiar/asn1-schema';
import { SubjectAlternativeName, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import type { ParsedCsr } from './csr.codec.js';

/**
 * The URIs a CSR asks for in its subjectAltName extension request. Informational: the issuance profile
 * never copies them; enrollment reads a requested `urn:dice:cdi:` commitment from here when nothing
 * else binds one (manufacturer-certificate enrollment of a device without an inventory commitment).
 */
export function requestedSanUris(csr: ParsedCsr): string[] {
  const extension = csr.requestedExtensions.find((candidate) => candidate.oid === id_ce_subjectAltName);
  if (!extension) return [];
  try {
    const names = AsnConvert.parse(extension.value, SubjectAlternativeName);
    return names
      .map((name) => name.uniformResourceIdentifier)
      .filter((uri): uri is string => uri !== undefined);
  } catch {
    return [];
  }
}
