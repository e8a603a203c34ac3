/**
 * The `:authority` and `host` values of a connection's FIRST header block, read without
 * decoding the rest: all the connection gate needs to choose between the raw socket and the
 * authority repair (authority-rewrite.ts).
 *
 * Why not hpack.js's decompressor, as the repair itself uses: it is a stream (readable-stream
 * machinery) built per connection, and decoding every field of every block through it cost
 * about 50 µs of CPU per new connection, some 7% of the agent's CPU when clients connect for
 * each fetch. Here only the strings that matter are decoded: names given as literals (is it an
 * authority?), authority values, and what the block inserts into the dynamic table (exact
 * sizes keep the table model exact, so a later reference in the same block resolves right).
 *
 * The block must already have passed an {@link HpackBudget} (its cost is bounded). A malformed
 * block throws an Error whose message starts with `hpack:`; fields this reader skips are
 * decoded, and checked, by nghttp2 once the connection is handed over.
 */
import { createRequire } from 'node:module';
import { DEFAULT_HEADER_TABLE_SIZE } from './hpack.ts';
import { BlockCursor, STATIC_TABLE, type StringSpan } from './hpack-budget.ts';

interface RawHuffmanDecoder {
  push(chunk: Buffer): void;
  decodeStr(): number[] | Buffer;
}
/** hpack.js's bit-level decoder (no stream): used for Huffman-coded strings only. */
const HuffmanDecoder = createRequire(import.meta.url)('hpack.js/lib/hpack/decoder.js') as { create(): RawHuffmanDecoder };

/** HPACK's per-entry overhead (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

interface Entry {
  readonly name: string;
  readonly value: string;
}

const isAuthorityName = (name: string): boolean => name === ':authority' || name === 'host';

/** Decodes the string literal at `span` of `block` (one char per byte, as on the wire). */
function decodeString(block: Buffer, span: StringSpan): string {
  const huffman = ((block[span.start] as number) & 0x80) !== 0;
  if (!huffman) return block.toString('latin1', span.octets, span.end);
  const decoder = HuffmanDecoder.create();
  decoder.push(block.subarray(span.start, span.end));
  let octets: number[] | Buffer;
  try {
    octets = decoder.decodeStr();
  } catch (err) {
    throw new Error(`hpack: ${(err as Error).message}`);
  }
  return Buffer.from(octets).toString('latin1');
}

/** The values of every `:authority` and `host` field in a connection's first header block. */
export function firstBlockAuthorities(block: Buffer): string[] {
  const cursor = new BlockCursor(block);
  const table: Entry[] = []; // newest first
  let tableSize = 0;
  let tableMax = DEFAULT_HEADER_TABLE_SIZE;
  const evict = (room: number): void => {
    while (table.length > 0 && tableSize + room > tableMax) {
      const oldest = table.pop() as Entry;
      tableSize -= oldest.name.length + oldest.value.length + ENTRY_OVERHEAD;
    }
  };
  const lookup = (index: number): Entry => {
    if (index === 0) throw new Error('hpack: index 0');
    const entry = STATIC_TABLE[index - 1] ?? table[index - 1 - STATIC_TABLE.length];
    if (entry === undefined) throw new Error(`hpack: index ${index} beyond the dynamic table`);
    return entry;
  };
  const authorities: string[] = [];
  while (cursor.offset < block.length) {
    const first = cursor.byte();
    if ((first & 0x80) !== 0) {
      // Indexed field (§6.1).
      const entry = lookup(cursor.int(7));
      if (isAuthorityName(entry.name)) authorities.push(entry.value);
      continue;
    }
    if ((first & 0xe0) === 0x20) {
      // Dynamic table size update (§6.3).
      const size = cursor.int(5);
      if (size > DEFAULT_HEADER_TABLE_SIZE) throw new Error(`hpack: table size update to ${size} exceeds ${DEFAULT_HEADER_TABLE_SIZE}`);
      tableMax = size;
      evict(0);
      continue;
    }
    // Literal field, with incremental indexing (§6.2.1) or without / never indexed (§6.2.2–3).
    const indexing = (first & 0xc0) === 0x40;
    const nameIndex = cursor.int(indexing ? 6 : 4);
    const name = nameIndex === 0 ? decodeString(block, cursor.span()) : lookup(nameIndex).name;
    const valueSpan = cursor.span();
    const authority = isAuthorityName(name);
    if (!authority && !indexing) continue;
    const value = decodeString(block, valueSpan);
    if (authority) authorities.push(value);
    if (indexing) {
      const size = name.length + value.length + ENTRY_OVERHEAD;
      evict(size);
      if (size <= tableMax) {
        table.unshift({ name, value });
        tableSize += size;
      }
    }
  }
  return authorities;
}
