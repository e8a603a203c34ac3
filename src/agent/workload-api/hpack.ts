/**
 * A typed, synchronous wrapper over hpack.js (HPACK, RFC 7541), which ships no types.
 *
 * hpack.js's compressor and decompressor are streams, but they push their output
 * synchronously inside write()/execute(), so each call here returns its result at once.
 * Header names and values are byte strings: one char per byte (latin1), as on the wire.
 */
import { createRequire } from 'node:module';

/** One decoded header field. */
export interface HeaderField {
  readonly name: string;
  readonly value: string;
  /** Whether the sender marked the field "never indexed" (sensitive); kept on re-encoding. */
  readonly neverIndex: boolean;
}

/** The initial HPACK dynamic table size of every HTTP/2 endpoint (RFC 7540 §6.5.2). */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

interface RawStream {
  write(chunk: unknown): boolean;
  read(): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
}
interface RawDecompressor extends RawStream {
  execute(): void;
}
interface HpackModule {
  compressor: { create(options: { table: { maxSize: number } }): RawStream };
  decompressor: { create(options: { table: { maxSize: number } }): RawDecompressor };
}

const hpack = createRequire(import.meta.url)('hpack.js') as HpackModule;

/** Decodes successive header blocks of one connection direction, tracking its dynamic table. */
export class HpackDecoder {
  readonly #raw: RawDecompressor;
  #error: Error | undefined;

  constructor(tableSize: number = DEFAULT_HEADER_TABLE_SIZE) {
    this.#raw = hpack.decompressor.create({ table: { maxSize: tableSize } });
    this.#raw.on('error', (err) => {
      this.#error = err;
    });
  }

  /** Decodes one complete header block; throws on a malformed block (the table is then unusable). */
  decode(block: Buffer): HeaderField[] {
    if (this.#error !== undefined) throw this.#error;
    this.#raw.write(block);
    this.#raw.execute();
    if (this.#error !== undefined) throw this.#error;
    const fields: HeaderField[] = [];
    for (let item = this.#raw.read(); item !== null; item = this.#raw.read()) {
      const { name, value, neverIndex } = item as { name: string; value: string; neverIndex: boolean };
      fields.push({ name, value, neverIndex });
    }
    return fields;
  }
}

/** Encodes successive header blocks (Huffman-coded, incrementally indexed) for one connection direction. */
export class HpackEncoder {
  readonly #raw: RawStream;

  constructor(tableSize: number = DEFAULT_HEADER_TABLE_SIZE) {
    this.#raw = hpack.compressor.create({ table: { maxSize: tableSize } });
  }

  /** Encodes one header block. */
  encode(fields: readonly HeaderField[]): Buffer {
    this.#raw.write(fields.map((f) => ({ name: f.name, value: f.value, neverIndex: f.neverIndex, huffman: true })));
    const out = this.#raw.read();
    return Buffer.isBuffer(out) ? out : Buffer.alloc(0);
  }
}
