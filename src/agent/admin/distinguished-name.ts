/**
 * A certificate's subject as text, formatted as Go's `pkix.Name.String()` prints it, which is
 * what spire-agent's Debug/GetInfo reports (`svid_chain[].subject`): RDNs in reverse order,
 * joined with ",", multi-valued RDNs with "+", the nine attributes Go names (C, ST, L, STREET,
 * POSTALCODE, O, OU, CN, SERIALNUMBER) as `NAME=value` with RFC 2253 escaping, and any other
 * attribute as `dotted.oid=#<hex DER>`.
 *
 * Go does not print the RDNs as encoded: it parses the name into fields and rebuilds them, so
 * other attributes come first in the sequence (last in the string), then the named ones grouped
 * by type in a fixed order, each type's values in one RDN; CN and SERIALNUMBER keep only the
 * last value. Pure.
 */
import { DerError, Tag, children, content, decodeOid, raw, readTlv, str, type Tlv } from '../../common/der.ts';

/** Go's names for attribute types, in the order its Name.ToRDNSequence emits them. */
const NAMED: ReadonlyArray<readonly [oid: string, name: string]> = [
  ['2.5.4.6', 'C'],
  ['2.5.4.8', 'ST'],
  ['2.5.4.7', 'L'],
  ['2.5.4.9', 'STREET'],
  ['2.5.4.17', 'POSTALCODE'],
  ['2.5.4.10', 'O'],
  ['2.5.4.11', 'OU'],
  ['2.5.4.3', 'CN'],
  ['2.5.4.5', 'SERIALNUMBER'],
];
const NAME_OF = new Map(NAMED);
const SINGLE_VALUED = new Set(['2.5.4.3', '2.5.4.5']);

/** String types Go's asn1 decodes to a Go string. */
const STRING_TAGS: ReadonlySet<number> = new Set([Tag.UTF8_STRING, Tag.PRINTABLE_STRING, Tag.T61_STRING, Tag.IA5_STRING, 0x12 /* NumericString */, Tag.BMP_STRING]);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

interface Attribute {
  readonly oid: string;
  /** The value as Go holds it: a string for string types, else undefined. */
  readonly text: string | undefined;
  /** The value's DER (for attributes printed as hex). */
  readonly der: Buffer;
}

function decodeString(tag: number, bytes: Buffer): string {
  if (tag === Tag.BMP_STRING) {
    const swapped = Buffer.from(bytes);
    swapped.swap16();
    return swapped.toString('utf16le');
  }
  return tag === Tag.UTF8_STRING ? bytes.toString('utf8') : bytes.toString('latin1');
}

function readAttributes(name: Buffer): Attribute[] {
  const top = readTlv(name, 0);
  if (top.tag !== Tag.SEQUENCE) throw new DerError('name: expected a SEQUENCE');
  const out: Attribute[] = [];
  for (const rdn of children(name, top)) {
    for (const atv of children(name, rdn)) {
      const [type, value] = children(name, atv) as [Tlv, Tlv];
      const text = STRING_TAGS.has(value.tag) ? decodeString(value.tag, content(name, value)) : undefined;
      out.push({ oid: decodeOid(content(name, type)), text, der: raw(name, value) });
    }
  }
  return out;
}

function escapeValue(value: string): string {
  const chars = [...value];
  let out = '';
  chars.forEach((c, k) => {
    const escape = ',+"\\<>;'.includes(c) || (c === ' ' && (k === 0 || k === chars.length - 1)) || (c === '#' && k === 0);
    out += escape ? `\\${c}` : c;
  });
  return out;
}

function formatAttribute(a: Attribute): string {
  const name = NAME_OF.get(a.oid);
  if (name !== undefined) return `${name}=${escapeValue(a.text ?? '')}`;
  // Go re-encodes the value it decoded: a string as PrintableString when it can, else UTF8String.
  const der = a.text === undefined ? a.der : str(PRINTABLE.test(a.text) ? Tag.PRINTABLE_STRING : Tag.UTF8_STRING, a.text);
  return `${a.oid}=#${der.toString('hex')}`;
}

/** Formats a DER Name (e.g. a certificate's subject) as Go's `pkix.Name.String()`. Throws DerError on malformed input. */
export function goNameString(nameDer: Buffer): string {
  const attributes = readAttributes(nameDer);
  const rdns: Attribute[][] = [];
  for (const a of attributes) if (!NAME_OF.has(a.oid)) rdns.push([a]);
  for (const [oid] of NAMED) {
    // Go keeps only string values in its named fields.
    let values = attributes.filter((a) => a.oid === oid && a.text !== undefined);
    if (SINGLE_VALUED.has(oid)) values = values.slice(-1).filter((a) => a.text !== '');
    if (values.length > 0) rdns.push(values);
  }
  return rdns
    .reverse()
    .map((rdn) => rdn.map(formatAttribute).join('+'))
    .join(',');
}
