import canonicalizeModule from 'canonicalize';

/*
 * RFC 8785 JSON Canonicalization Scheme, by the RFC author's reference package. It is CommonJS
 * (`module.exports = fn`) while its typings declare an ES default export, so under NodeNext the
 * default import is the function at run time but typed as the module: bridge that here, once.
 */
const serialize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

/** Canonical JSON text of `value`; throws for values JSON cannot represent. */
export function canonicalJson(value: unknown): string {
  const text = serialize(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return text;
}
