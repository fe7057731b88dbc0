import { decodeDirectoryString, decodeOid, derChildren, expectTag, type Tlv } from './der.reader.js';
import { derOid, derSequence, derSet, derUtf8String } from './der.writer.js';
import { OID } from './oid.constants.js';
import { PkiError } from './pki.errors.js';

export interface NameAttributes {
  readonly commonName: string;
  readonly organizationalUnit?: string;
  readonly organization?: string;
}

/** A distinguished name with one attribute per RDN, UTF8String values (RFC 5280 4.1.2.6). */
export function encodeName(name: NameAttributes): Buffer {
  const rdn = (oid: string, value: string) => derSet(derSequence(derOid(oid), derUtf8String(value)));
  return derSequence(
    ...(name.organization === undefined ? [] : [rdn(OID.organizationName, name.organization)]),
    ...(name.organizationalUnit === undefined
      ? []
      : [rdn(OID.organizationalUnitName, name.organizationalUnit)]),
    rdn(OID.commonName, name.commonName),
  );
}

/** Every CN value in a Name, in order. Throws DER_MALFORMED on structure or string encoding errors. */
export function readCommonNames(name: Tlv): string[] {
  const values: string[] = [];
  for (const rdn of derChildren(expectTag(name, 0x30))) {
    for (const attribute of derChildren(expectTag(rdn, 0x31))) {
      const [type, value] = derChildren(expectTag(attribute, 0x30));
      if (!type || !value) throw new PkiError('DER_MALFORMED', 'attribute without type or value');
      if (decodeOid(type) !== OID.commonName) continue;
      const text = decodeDirectoryString(value);
      if (text === undefined) throw new PkiError('DER_MALFORMED', 'CN in an unsupported string type');
      values.push(text);
    }
  }
  return values;
}
