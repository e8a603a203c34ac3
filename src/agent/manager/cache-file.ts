/**
 * The on-disk form of the workload SVID cache (`<data_dir>/workload-cache.bin`): a pure
 * encoder and a pure decoder that returns a result instead of throwing.
 *
 * Layout (all integers big-endian):
 *   header   magic "\x89SNAWC\r\n" (8) | version u16 | reserved u16 | payload length u32 |
 *            SHA-256 of the payload (32)
 *   payload  writtenAt f64 | trustDomain str | agentId str |
 *            bundles: u32 n × { trustDomain str | x509 bytes | u32 m × { keyId str | spki bytes } } |
 *            svids:   u32 n × { entryId str | spiffeId str | hint str | createdAt f64 |
 *                               revision f64 | u32 m × { type str | value str } |
 *                               u32 k × federatesWith str | certChain bytes | privateKey bytes }
 *   str = bytes of UTF-8; bytes = u32 length + data.
 *
 * Why binary: DER certificates and keys are stored as they are (JSON would base64 them,
 * a third larger), and the checksum plus the exact length turn a truncated or scribbled
 * file into a clean "ignore" rather than half a cache. Keys are in the file, so it is
 * written 0600 like the agent key; this module never logs anything.
 */
import { createHash } from 'node:crypto';
import type { Selector } from '../../common/selector.ts';
import type { Parsed } from '../../common/spiffe-id.ts';

/** The current format version; a file of another version is ignored. */
export const CACHE_FILE_VERSION = 1;

const MAGIC = Buffer.from([0x89, 0x53, 0x4e, 0x41, 0x57, 0x43, 0x0d, 0x0a]);
const HEADER_SIZE = MAGIC.length + 2 + 2 + 4 + 32;

/** One trust domain's bundle as stored. */
export interface StoredBundle {
  readonly trustDomain: string;
  /** Concatenated DER roots. */
  readonly x509: Buffer;
  readonly jwtKeys: readonly { readonly keyId: string; readonly spki: Buffer }[];
}

/** One cached X509-SVID with the entry fields it is served and matched with. */
export interface StoredSvid {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  readonly createdAt: number;
  readonly revisionNumber: number;
  readonly selectors: readonly Selector[];
  readonly federatesWith: readonly string[];
  /** DER leaf then intermediates, concatenated. */
  readonly certChain: Buffer;
  /** PKCS#8 DER. */
  readonly privateKey: Buffer;
}

/** Everything the file holds. */
export interface CacheFileContent {
  /** Clock milliseconds of the write. */
  readonly writtenAt: number;
  readonly trustDomain: string;
  /** The agent SPIFFE ID the SVIDs were minted under. */
  readonly agentId: string;
  readonly bundles: readonly StoredBundle[];
  readonly svids: readonly StoredSvid[];
}

/** Where the encoder puts fields: first a Sizer (to allocate once), then a Writer. */
interface Sink {
  u32(v: number): void;
  f64(v: number): void;
  bytes(b: Uint8Array): void;
  str(s: string): void;
}

/** Counts the bytes the fields will take. */
class Sizer implements Sink {
  size = 0;
  u32(): void {
    this.size += 4;
  }
  f64(): void {
    this.size += 8;
  }
  bytes(b: Uint8Array): void {
    this.size += 4 + b.length;
  }
  str(s: string): void {
    this.size += 4 + Buffer.byteLength(s);
  }
}

/** Writes the fields into a buffer of the size the Sizer found. */
class Writer implements Sink {
  readonly #buf: Buffer;
  #pos: number;

  constructor(buf: Buffer, offset: number) {
    this.#buf = buf;
    this.#pos = offset;
  }

  u32(v: number): void {
    this.#pos = this.#buf.writeUInt32BE(v, this.#pos);
  }

  f64(v: number): void {
    this.#pos = this.#buf.writeDoubleBE(v, this.#pos);
  }

  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  str(s: string): void {
    const n = this.#buf.write(s, this.#pos + 4);
    this.u32(n);
    this.#pos += n;
  }

  get position(): number {
    return this.#pos;
  }
}

/** Thrown by Reader past the end; caught in decodeCacheFile. */
class Truncated extends Error {}

/** Reads what Writer wrote; every read is bounds-checked. Copies bytes out (see bytes()). */
class Reader {
  readonly #buf: Buffer;
  #pos = 0;

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  #need(n: number): void {
    if (this.#pos + n > this.#buf.length) throw new Truncated('payload ends inside a field');
  }

  u32(): number {
    this.#need(4);
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  f64(): number {
    this.#need(8);
    const v = this.#buf.readDoubleBE(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** A copy, so the served identities do not keep the whole file buffer alive. */
  bytes(): Buffer {
    const n = this.u32();
    this.#need(n);
    const out = Buffer.copyBytesFrom(this.#buf, this.#pos, n);
    this.#pos += n;
    return out;
  }

  str(): string {
    const n = this.u32();
    this.#need(n);
    const s = this.#buf.toString('utf8', this.#pos, this.#pos + n);
    this.#pos += n;
    return s;
  }

  /** A count of items each at least `minItemBytes` long, refused if it cannot fit. */
  count(minItemBytes: number): number {
    const n = this.u32();
    if (n * minItemBytes > this.#buf.length - this.#pos) throw new Truncated(`a count of ${n} items cannot fit in the rest of the payload`);
    return n;
  }

  get done(): boolean {
    return this.#pos === this.#buf.length;
  }
}

function encodePayload(content: CacheFileContent, w: Sink): void {
  w.f64(content.writtenAt);
  w.str(content.trustDomain);
  w.str(content.agentId);
  w.u32(content.bundles.length);
  for (const b of content.bundles) {
    w.str(b.trustDomain);
    w.bytes(b.x509);
    w.u32(b.jwtKeys.length);
    for (const k of b.jwtKeys) {
      w.str(k.keyId);
      w.bytes(k.spki);
    }
  }
  w.u32(content.svids.length);
  for (const s of content.svids) {
    w.str(s.entryId);
    w.str(s.spiffeId);
    w.str(s.hint);
    w.f64(s.createdAt);
    w.f64(s.revisionNumber);
    w.u32(s.selectors.length);
    for (const sel of s.selectors) {
      w.str(sel.type);
      w.str(sel.value);
    }
    w.u32(s.federatesWith.length);
    for (const td of s.federatesWith) w.str(td);
    w.bytes(s.certChain);
    w.bytes(s.privateKey);
  }
}

/** Encodes the cache file (header, checksum and payload) into one buffer, allocated once. */
export function encodeCacheFile(content: CacheFileContent): Buffer {
  const sizer = new Sizer();
  encodePayload(content, sizer);
  const file = Buffer.allocUnsafe(HEADER_SIZE + sizer.size);
  const writer = new Writer(file, HEADER_SIZE);
  encodePayload(content, writer);
  if (writer.position !== file.length) throw new Error('cache-file: encoded size differs from the computed size');
  MAGIC.copy(file, 0);
  file.writeUInt16BE(CACHE_FILE_VERSION, MAGIC.length);
  file.writeUInt16BE(0, MAGIC.length + 2);
  file.writeUInt32BE(sizer.size, MAGIC.length + 4);
  createHash('sha256').update(file.subarray(HEADER_SIZE)).digest().copy(file, MAGIC.length + 8);
  return file;
}

function decodePayload(payload: Buffer): CacheFileContent {
  const r = new Reader(payload);
  const writtenAt = r.f64();
  const trustDomain = r.str();
  const agentId = r.str();
  const bundles: StoredBundle[] = [];
  for (let i = r.count(12); i > 0; i--) {
    const td = r.str();
    const x509 = r.bytes();
    const jwtKeys: { keyId: string; spki: Buffer }[] = [];
    for (let j = r.count(8); j > 0; j--) jwtKeys.push({ keyId: r.str(), spki: r.bytes() });
    bundles.push({ trustDomain: td, x509, jwtKeys });
  }
  const svids: StoredSvid[] = [];
  for (let i = r.count(44); i > 0; i--) {
    const entryId = r.str();
    const spiffeId = r.str();
    const hint = r.str();
    const createdAt = r.f64();
    const revisionNumber = r.f64();
    const selectors: Selector[] = [];
    for (let j = r.count(8); j > 0; j--) selectors.push({ type: r.str(), value: r.str() });
    const federatesWith: string[] = [];
    for (let j = r.count(4); j > 0; j--) federatesWith.push(r.str());
    svids.push({ entryId, spiffeId, hint, createdAt, revisionNumber, selectors, federatesWith, certChain: r.bytes(), privateKey: r.bytes() });
  }
  if (!r.done) throw new Truncated('trailing bytes after the last SVID');
  return { writtenAt, trustDomain, agentId, bundles, svids };
}

/**
 * Decodes a cache file. Fails (never throws) on a foreign file, another version, a
 * truncated file, a checksum mismatch or a malformed payload; the error says which.
 */
export function decodeCacheFile(file: Buffer): Parsed<CacheFileContent> {
  if (file.length < HEADER_SIZE) {
    return { ok: false, error: file.subarray(0, MAGIC.length).equals(MAGIC.subarray(0, Math.min(file.length, MAGIC.length))) ? `truncated: ${file.length} bytes, shorter than the header` : 'not a workload cache file' };
  }
  if (!file.subarray(0, MAGIC.length).equals(MAGIC)) return { ok: false, error: 'not a workload cache file' };
  const version = file.readUInt16BE(MAGIC.length);
  if (version !== CACHE_FILE_VERSION) return { ok: false, error: `format version ${version} is not the supported version ${CACHE_FILE_VERSION}` };
  const length = file.readUInt32BE(MAGIC.length + 4);
  const payload = file.subarray(HEADER_SIZE);
  if (payload.length !== length) return { ok: false, error: `truncated: the payload is ${payload.length} bytes, the header says ${length}` };
  const digest = file.subarray(MAGIC.length + 8, HEADER_SIZE);
  if (!createHash('sha256').update(payload).digest().equals(digest)) return { ok: false, error: 'checksum mismatch' };
  try {
    return { ok: true, value: decodePayload(payload) };
  } catch (err) {
    return { ok: false, error: `malformed payload: ${err instanceof Error ? err.message : String(err)}` };
  }
}
