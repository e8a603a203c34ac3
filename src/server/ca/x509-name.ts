/** X.500 distinguished names: the subject and issuer of certificates. */
import { Tag, children, content, decodeOid, expectTlv, oid, seq, set, str } from '../../common/der.ts';

/**
 * A distinguished name. Multi-valued attributes accept one string or several. Attributes are
 * encoded in Go's `pkix.Name` order (C, ST, L, O, OU, CN, serialNumber), one RDN each, so
 * names match what SPIRE issues.
 */
export interface DistinguishedName {
  country?: string | readonly string[];
  province?: string | readonly string[];
  locality?: string | readonly string[];
  organization?: string | readonly string[];
  organizationalUnit?: string | readonly string[];
  commonName?: string;
  serialNumber?: string;
}

const OID_COUNTRY = '2.5.4.6';
const OID_PROVINCE = '2.5.4.8';
const OID_LOCALITY = '2.5.4.7';
const OID_ORGANIZATION = '2.5.4.10';
const OID_ORGANIZATIONAL_UNIT = '2.5.4.11';
const OID_COMMON_NAME = '2.5.4.3';
const OID_SERIAL_NUMBER = '2.5.4.5';

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

function list(v: string | readonly string[] | undefined): readonly string[] {
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : v;
}

function rdn(attrOid: string, value: string): Buffer {
  // Go encodes PrintableString when the value allows it and UTF8String otherwise.
  const tag = PRINTABLE.test(value) ? Tag.PRINTABLE_STRING : Tag.UTF8_STRING;
  return set(seq(oid(attrOid), str(tag, value)));
}

/** Encodes a name as a DER RDNSequence. Empty values are skipped. */
export function encodeName(name: DistinguishedName): Buffer {
  const rdns: Buffer[] = [];
  const add = (attrOid: string, values: readonly string[]): void => {
    for (const v of values) if (v !== '') rdns.push(rdn(attrOid, v));
  };
  add(OID_COUNTRY, list(name.country));
  add(OID_PROVINCE, list(name.province));
  add(OID_LOCALITY, list(name.locality));
  add(OID_ORGANIZATION, list(name.organization));
  add(OID_ORGANIZATIONAL_UNIT, list(name.organizationalUnit));
  add(OID_COMMON_NAME, list(name.commonName));
  add(OID_SERIAL_NUMBER, list(name.serialNumber));
  return seq(...rdns);
}

/** True when the name has no attribute with a non-empty value. */
export function isEmptyName(name: DistinguishedName): boolean {
  return encodeName(name).length === 2;
}

/** SPIRE's default X509-SVID subject: `C=US, O=SPIRE`. */
export const DEFAULT_SVID_SUBJECT: Readonly<DistinguishedName> = Object.freeze({ country: 'US', organization: 'SPIRE' });

/** SPIRE's default CA subject: `C=US, O=SPIFFE`. */
export const DEFAULT_CA_SUBJECT: Readonly<DistinguishedName> = Object.freeze({ country: 'US', organization: 'SPIFFE' });

const STRING_TAGS: ReadonlySet<number> = new Set([Tag.UTF8_STRING, Tag.PRINTABLE_STRING, Tag.T61_STRING, Tag.IA5_STRING]);

/**
 * Decodes a DER RDNSequence into the attributes {@link DistinguishedName} knows, as Go's
 * `pkix.Name.FillFromRDNSequence` keeps them (other attributes and non-string values are
 * dropped; a repeated CN or serialNumber keeps the last). Throws DerError on malformed input.
 */
export function decodeName(der: Buffer): DistinguishedName {
  const name: { -readonly [K in keyof DistinguishedName]: string[] } = {};
  const push = (key: keyof DistinguishedName, value: string): void => void (name[key] ??= []).push(value);
  const top = expectTlv(der, 0, Tag.SEQUENCE, 'Name');
  for (const rdnT of children(der, top)) {
    if (rdnT.tag !== Tag.SET) continue;
    for (const atv of children(der, rdnT)) {
      const [typeT, valueT] = children(der, atv);
      if (!typeT || typeT.tag !== Tag.OID || !valueT || !STRING_TAGS.has(valueT.tag)) continue;
      const value = content(der, valueT).toString(valueT.tag === Tag.UTF8_STRING ? 'utf8' : 'latin1');
      switch (decodeOid(content(der, typeT))) {
        case OID_COUNTRY: push('country', value); break;
        case OID_PROVINCE: push('province', value); break;
        case OID_LOCALITY: push('locality', value); break;
        case OID_ORGANIZATION: push('organization', value); break;
        case OID_ORGANIZATIONAL_UNIT: push('organizationalUnit', value); break;
        case OID_COMMON_NAME: name.commonName = [value]; break;
        case OID_SERIAL_NUMBER: name.serialNumber = [value]; break;
      }
    }
  }
  const { commonName, serialNumber, ...multi } = name;
  return {
    ...multi,
    ...(commonName !== undefined ? { commonName: commonName[0] as string } : {}),
    ...(serialNumber !== undefined ? { serialNumber: serialNumber[0] as string } : {}),
  };
}
