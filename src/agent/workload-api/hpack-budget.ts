/**
 * Bounds what decoding an HPACK header block (RFC 7541) may cost, before it is decoded.
 *
 * Why: a 16 KiB block can legally expand to tens of megabytes: one 4 KiB literal inserted into
 * the dynamic table, then thousands of one-byte references to it (an "HPACK bomb"), or
 * thousands of one-byte static references. Decoding that takes tens of milliseconds of the
 * event loop every other caller shares. The budget walks the block's representations without
 * decoding any string, counts fields, and adds up an upper bound of the decoded header list
 * size (name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts): a Huffman
 * string decodes to at most 8/5 of its length (the shortest code is 5 bits).
 *
 * The dynamic table is modelled with those upper bounds, so the model evicts at least as
 * much as the real table: an entry the model holds is one the real table holds at the same
 * index, and a reference beyond the model is charged the table's whole size. One budget
 * follows one connection direction across blocks, like the decoder it guards.
 */
import { createRequire } from 'node:module';
import { DEFAULT_HEADER_TABLE_SIZE } from './hpack.ts';

/** Limits of an {@link HpackBudget}. */
export interface HpackBudgetLimits {
  /** Fields per block (Node's own maxHeaderListPairs default is 128). */
  readonly maxFields?: number;
  /** Upper bound of the decoded header list size, in bytes. */
  readonly maxListSize?: number;
}

export const DEFAULT_MAX_HEADER_FIELDS = 128;
export const DEFAULT_MAX_HEADER_LIST_SIZE = 64 * 1024;

/** HPACK's per-entry overhead (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

interface StaticEntry {
  readonly name: string;
  readonly value: string;
  readonly nameSize: number;
  readonly totalSize: number;
}
/** RFC 7541 Appendix A, as hpack.js ships it (index 1 is element 0). */
export const STATIC_TABLE = (createRequire(import.meta.url)('hpack.js/lib/hpack/static-table.js') as { table: StaticEntry[] }).table;

/** Sizes (upper bounds) of one field. */
interface FieldBound {
  readonly name: number;
  readonly value: number;
}

/** Where a string literal lies in its block. */
export interface StringSpan {
  /** Its first byte (the H bit and the length prefix). */
  readonly start: number;
  /** Its first octet after the length. */
  readonly octets: number;
  readonly end: number;
}

/** A read position in a header block: HPACK integers and string literals (RFC 7541 §5). */
export class BlockCursor {
  readonly buf: Buffer;
  offset = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  byte(): number {
    const b = this.buf[this.offset];
    if (b === undefined) throw new Error('hpack: truncated header block');
    return b;
  }

  /** An integer with an N-bit prefix (RFC 7541 §5.1), capped well below 2^31. */
  int(prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = this.byte() & max;
    this.offset += 1;
    if (value < max) return value;
    for (let shift = 0; ; shift += 7) {
      if (shift > 21) throw new Error('hpack: integer too large');
      const b = this.byte();
      this.offset += 1;
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
  }

  /** Skips a string literal (§5.2) and returns where it starts (its H bit), where its octets start, and where it ends. */
  span(): StringSpan {
    const start = this.offset;
    const length = this.int(7);
    const octets = this.offset;
    if (octets + length > this.buf.length) throw new Error('hpack: truncated string literal');
    this.offset += length;
    return { start, octets, end: this.offset };
  }

  /** Skips a string literal (§5.2) and returns an upper bound of its decoded length. */
  string(): number {
    const huffman = (this.byte() & 0x80) !== 0;
    const length = this.int(7);
    if (this.offset + length > this.buf.length) throw new Error('hpack: truncated string literal');
    this.offset += length;
    return huffman ? Math.floor((length * 8) / 5) : length;
  }
}

/** Tracks one connection direction's HPACK state closely enough to bound each block's cost. */
export class HpackBudget {
  readonly #maxFields: number;
  readonly #maxListSize: number;
  /** Newest first: upper bounds of the dynamic table's entries. */
  #table: FieldBound[] = [];
  #tableSize = 0;
  #tableMax = DEFAULT_HEADER_TABLE_SIZE;

  constructor(limits: HpackBudgetLimits = {}) {
    this.#maxFields = limits.maxFields ?? DEFAULT_MAX_HEADER_FIELDS;
    this.#maxListSize = limits.maxListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE;
  }

  /**
   * Walks one complete block, updating the table model; throws when the block is malformed
   * or would decode to more fields or bytes than allowed.
   */
  charge(block: Buffer): void {
    const cursor = new BlockCursor(block);
    let fields = 0;
    let listSize = 0;
    while (cursor.offset < block.length) {
      const first = cursor.byte();
      let field: FieldBound;
      if ((first & 0x80) !== 0) {
        field = this.#lookup(cursor.int(7));
      } else if ((first & 0xe0) === 0x20) {
        const size = cursor.int(5);
        if (size > DEFAULT_HEADER_TABLE_SIZE) throw new Error(`hpack: table size update to ${size} exceeds ${DEFAULT_HEADER_TABLE_SIZE}`);
        this.#tableMax = size;
        this.#evict(0);
        continue;
      } else {
        const indexing = (first & 0xc0) === 0x40;
        const nameIndex = cursor.int(indexing ? 6 : 4);
        const name = nameIndex === 0 ? cursor.string() : this.#lookup(nameIndex).name;
        field = { name, value: cursor.string() };
        if (indexing) this.#insert(field);
      }
      fields += 1;
      listSize += field.name + field.value + ENTRY_OVERHEAD;
      if (fields > this.#maxFields) throw new Error(`hpack: header block has more than ${this.#maxFields} fields`);
      if (listSize > this.#maxListSize) throw new Error(`hpack: header list may decode to more than ${this.#maxListSize} bytes`);
    }
  }

  #lookup(index: number): FieldBound {
    if (index === 0) throw new Error('hpack: index 0');
    const fixed = STATIC_TABLE[index - 1];
    if (fixed !== undefined) return { name: fixed.nameSize, value: fixed.totalSize - fixed.nameSize - ENTRY_OVERHEAD };
    const entry = this.#table[index - 1 - STATIC_TABLE.length];
    if (entry !== undefined) return entry;
    if (index - STATIC_TABLE.length > this.#tableMax / ENTRY_OVERHEAD) throw new Error(`hpack: index ${index} beyond the dynamic table`);
    // Evicted from the model but maybe not from the real table: charge the most it can hold.
    return { name: this.#tableMax, value: 0 };
  }

  #insert(field: FieldBound): void {
    const size = field.name + field.value + ENTRY_OVERHEAD;
    this.#evict(size);
    if (size > this.#tableMax) return;
    this.#table.unshift(field);
    this.#tableSize += size;
  }

  /** Drops the oldest entries until `room` more bytes fit. */
  #evict(room: number): void {
    while (this.#table.length > 0 && this.#tableSize + room > this.#tableMax) {
      const oldest = this.#table.pop() as FieldBound;
      this.#tableSize -= oldest.name + oldest.value + ENTRY_OVERHEAD;
    }
  }
}
