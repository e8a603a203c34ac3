/**
 * A small DER encoder and reader: just what X.509 certificates and PKCS#10 requests need.
 *
 * Building and reading certificates by hand keeps OpenSSL and the generic ASN.1 libraries off
 * the signing hot path (a certificate is built and signed in tens of microseconds).
 */

/** ASN.1 universal tags used here. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.of(len);
  if (len < 0x100) return Buffer.of(0x81, len);
  if (len < 0x10000) return Buffer.of(0x82, len >> 8, len & 0xff);
  if (len < 0x1000000) return Buffer.of(0x83, len >> 16, (len >> 8) & 0xff, len & 0xff);
  throw new RangeError('der: value too long');
}

/** Encodes one TLV with a single-byte tag. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(tag), encodeLength(content.length), content]);
}

/** A SEQUENCE of already-encoded elements. */
export function seq(...elements: Uint8Array[]): Buffer {
  return tlv(Tag.SEQUENCE, Buffer.concat(elements));
}

/** A SET of already-encoded elements (the caller supplies DER order). */
export function set(...elements: Uint8Array[]): Buffer {
  return tlv(Tag.SET, Buffer.concat(elements));
}

/** A context-specific constructed tag `[n]` wrapping content (EXPLICIT, or IMPLICIT of a constructed type). */
export function ctxConstructed(n: number, content: Uint8Array): Buffer {
  return tlv(0xa0 | n, content);
}

/** A context-specific primitive tag `[n]` (IMPLICIT of a primitive type). */
export function ctxPrimitive(n: number, content: Uint8Array): Buffer {
  return tlv(0x80 | n, content);
}

/** A non-negative INTEGER from its big-endian magnitude bytes. */
export function uintBytes(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = Buffer.from(magnitude.subarray(start));
  const body = trimmed.length === 0 ? Buffer.of(0) : (trimmed[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.of(0), trimmed]) : trimmed;
  return tlv(Tag.INTEGER, body);
}

/** A small non-negative INTEGER. */
export function uint(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('der: integer out of range');
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return uintBytes(Buffer.from(bytes));
}

/** A BOOLEAN. */
export function bool(value: boolean): Buffer {
  return Buffer.of(Tag.BOOLEAN, 1, value ? 0xff : 0x00);
}

/** NULL. */
export const NULL: Buffer = Buffer.of(Tag.NULL, 0);

/** An OCTET STRING. */
export function octetString(content: Uint8Array): Buffer {
  return tlv(Tag.OCTET_STRING, content);
}

/** A BIT STRING with the given number of unused trailing bits. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return tlv(Tag.BIT_STRING, Buffer.concat([Buffer.of(unusedBits), bytes]));
}

/** A string of the given string tag (PrintableString, UTF8String, IA5String). */
export function str(tag: number, value: string): Buffer {
  return tlv(tag, Buffer.from(value, tag === Tag.UTF8_STRING ? 'utf8' : 'latin1'));
}

const oidCache = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER from dotted form (results are cached: OIDs are a small fixed set). */
export function oid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached) return cached;
  const arcs = dotted.split('.').map((a) => Number(a));
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new RangeError(`der: bad OID ${dotted}`);
  const out: number[] = [];
  const pushArc = (arc: number): void => {
    const tmp: number[] = [arc & 0x7f];
    let v = Math.floor(arc / 128);
    while (v > 0) {
      tmp.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...tmp);
  };
  pushArc(arcs[0]! * 40 + arcs[1]!);
  for (const arc of arcs.slice(2)) pushArc(arc);
  const encoded = tlv(Tag.OID, Buffer.from(out));
  oidCache.set(dotted, encoded);
  return encoded;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** A Time as RFC 5280 requires: UTCTime through 2049, GeneralizedTime after; whole seconds, UTC. */
export function time(ms: number): Buffer {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const year = d.getUTCFullYear();
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year < 2050) return str(Tag.UTC_TIME, `${pad2(year % 100)}${rest}`);
  return str(Tag.GENERALIZED_TIME, `${String(year).padStart(4, '0')}${rest}`);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One decoded TLV: positions are offsets into the buffer it was read from. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the content. */
  readonly end: number;
}

/** Thrown by the reader on malformed input; callers map it to their own error. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** Reads the TLV at `offset`, bounded by `limit` (default: the buffer end). DER only: definite lengths. */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated element');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let lenByte = buf[offset + 1]!;
  let pos = offset + 2;
  let len: number;
  if (lenByte < 0x80) {
    len = lenByte;
  } else {
    lenByte &= 0x7f;
    if (lenByte === 0) throw new DerError('indefinite length is not DER');
    if (lenByte > 4) throw new DerError('length too large');
    if (pos + lenByte > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < lenByte; i++) len = len * 256 + buf[pos + i]!;
    pos += lenByte;
  }
  const end = pos + len;
  if (end > limit) throw new DerError('element extends past its container');
  return { tag, start: offset, contentStart: pos, end };
}

/** Reads a TLV and checks its tag. */
export function expectTlv(buf: Uint8Array, offset: number, tag: number, what: string, limit?: number): Tlv {
  const got = buf[offset];
  if (got !== undefined && got !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${got.toString(16)}`);
  return readTlv(buf, offset, limit);
}

/** The direct children of a constructed element. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const t = readTlv(buf, pos, parent.end);
    out.push(t);
    pos = t.end;
  }
  return out;
}

/** The content bytes of an element (a view, not a copy). */
export function content(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.contentStart, t.end);
}

/** The whole encoding of an element (a view, not a copy). */
export function raw(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.start, t.end);
}

/** Decodes OBJECT IDENTIFIER content to dotted form. */
export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        arcs.push(first, v - first * 40);
      } else {
        arcs.push(v);
      }
      v = 0;
    } else if (i === bytes.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  return arcs.join('.');
}

/** Decodes a UTCTime or GeneralizedTime element to milliseconds since the epoch. */
export function decodeTime(buf: Buffer, t: Tlv): number {
  const s = buf.toString('latin1', t.contentStart, t.end);
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === Tag.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError(`bad UTCTime ${JSON.stringify(s)}`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (t.tag === Tag.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s);
    if (!m) throw new DerError(`bad GeneralizedTime ${JSON.stringify(s)}`);
    year = Number(m[1]);
  } else {
    throw new DerError(`expected a time, got tag 0x${t.tag.toString(16)}`);
  }
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** Splits concatenated DER elements (for example a certificate chain) into views. */
export function splitConcatenated(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const t = readTlv(buf, pos);
    out.push(buf.subarray(t.start, t.end));
    pos = t.end;
  }
  return out;
}
