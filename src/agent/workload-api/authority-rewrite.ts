/**
 * Rewrites the `:authority` a client sends when Node's HTTP/2 layer would reject it.
 *
 * Why: grpc-java (java-spiffe) sends the Unix socket PATH as `:authority`
 * ("/run/spire/agent.sock"). nghttp2's HTTP messaging checks reset every stream whose
 * authority holds a character outside RFC 3986's authority set ("/" here) with
 * PROTOCOL_ERROR before grpc-js sees it, and Node offers no option to relax that. The
 * Workload API never uses the authority, so such values are replaced with "localhost".
 *
 * {@link InboundHeaderRewriter} transforms a client's whole inbound byte stream: every
 * header block is decoded and re-encoded, every other frame passes through unchanged.
 */
import { HpackDecoder, HpackEncoder, type HeaderField } from './hpack.ts';
import {
  CONNECTION_PREFACE,
  encodeHeaderBlock,
  FRAME_HEADER_LENGTH,
  FrameFlag,
  FrameType,
  isSettingsAck,
  parseHeadersPayload,
  readFrameHeader,
} from './http2-frames.ts';

/** What replaces an authority Node would reject. */
export const REPLACEMENT_AUTHORITY = 'localhost';

/** The largest header block we reassemble (far above gRPC's 8 KiB default metadata limit). */
const MAX_HEADER_BLOCK = 1 << 20;

/**
 * Whether nghttp2 accepts `value` as `:authority`/`host`: only RFC 3986 authority
 * characters (unreserved, sub-delims, ":", "@", "[", "]", "%").
 */
export function isAcceptableAuthority(value: string): boolean {
  return /^[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]*$/.test(value);
}

/** Whether any authority field in a decoded block would be rejected. */
export function needsAuthorityRewrite(fields: readonly HeaderField[]): boolean {
  return fields.some((f) => (f.name === ':authority' || f.name === 'host') && !isAcceptableAuthority(f.value));
}

/** The fields with every rejected authority replaced by {@link REPLACEMENT_AUTHORITY}. */
export function rewriteAuthority(fields: readonly HeaderField[]): HeaderField[] {
  return fields.map((f) =>
    (f.name === ':authority' || f.name === 'host') && !isAcceptableAuthority(f.value) ? { ...f, value: REPLACEMENT_AUTHORITY } : f,
  );
}

interface OpenBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  readonly priority: Buffer | undefined;
  readonly fragments: Buffer[];
  size: number;
}

/**
 * Transforms a client's inbound HTTP/2 bytes (starting with the preface) for one connection.
 *
 * Why every block is re-encoded, and why the table sizes are what they are: HPACK is
 * stateful per direction. The client's encoder and our decoder share one dynamic table (the
 * client may use up to the SETTINGS_HEADER_TABLE_SIZE the server advertises; grpc-js leaves
 * it at the default 4096, and the client announces any smaller size inside a block, which
 * the decoder follows). Once one block is re-encoded, the server's decoder tracks OUR
 * encoder's table, not the client's, so every later block must be re-encoded too. Our
 * encoder uses 4096 bytes, the size the server's decoder starts with and never shrinks
 * (the server sends its own SETTINGS, which pass through unchanged), so no size update is
 * needed. The server-to-client direction is untouched, so its table stays consistent.
 */
export class InboundHeaderRewriter {
  readonly #decoder = new HpackDecoder();
  readonly #encoder = new HpackEncoder();
  #pending: Buffer = Buffer.alloc(0);
  #prefaceSeen = false;
  #open: OpenBlock | undefined;
  #dropSettingsAck: boolean;

  /**
   * @param dropSettingsAck - drop the client's next SETTINGS acknowledgement: it answers the
   *   SETTINGS frame authority-repair.ts sent itself, which the server never sent.
   */
  constructor(opts: { dropSettingsAck?: boolean } = {}) {
    this.#dropSettingsAck = opts.dropSettingsAck ?? false;
  }

  /** Feeds received bytes; returns what to forward (possibly empty). Throws on a protocol error. */
  push(chunk: Buffer): Buffer {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: Buffer[] = [];
    let offset = 0;
    const buf = this.#pending;
    if (!this.#prefaceSeen) {
      if (buf.length < CONNECTION_PREFACE.length) return Buffer.alloc(0);
      if (!buf.subarray(0, CONNECTION_PREFACE.length).equals(CONNECTION_PREFACE)) throw new Error('http2: bad connection preface');
      out.push(buf.subarray(0, CONNECTION_PREFACE.length));
      offset = CONNECTION_PREFACE.length;
      this.#prefaceSeen = true;
    }
    for (;;) {
      const header = readFrameHeader(buf, offset);
      if (header === undefined) break;
      const end = offset + FRAME_HEADER_LENGTH + header.length;
      if (end > buf.length) break;
      const payload = buf.subarray(offset + FRAME_HEADER_LENGTH, end);
      if (this.#open !== undefined) {
        if (header.type !== FrameType.CONTINUATION || header.streamId !== this.#open.streamId) {
          throw new Error('http2: header block interrupted by another frame');
        }
        this.#append(payload);
        if ((header.flags & FrameFlag.END_HEADERS) !== 0) out.push(this.#finish());
      } else if (header.type === FrameType.HEADERS) {
        const { fragment, priority } = parseHeadersPayload(header.flags, payload);
        this.#open = {
          streamId: header.streamId,
          endStream: (header.flags & FrameFlag.END_STREAM) !== 0,
          // Copied: `payload` is a view of a buffer that is about to be dropped.
          priority: priority === undefined ? undefined : Buffer.from(priority),
          fragments: [],
          size: 0,
        };
        this.#append(fragment);
        if ((header.flags & FrameFlag.END_HEADERS) !== 0) out.push(this.#finish());
      } else if (header.type === FrameType.CONTINUATION) {
        throw new Error('http2: CONTINUATION without HEADERS');
      } else if (this.#dropSettingsAck && isSettingsAck(header)) {
        this.#dropSettingsAck = false;
      } else {
        out.push(buf.subarray(offset, end));
      }
      offset = end;
    }
    this.#pending = offset === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(offset));
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }

  #append(fragment: Buffer): void {
    const open = this.#open as OpenBlock;
    open.size += fragment.length;
    if (open.size > MAX_HEADER_BLOCK) throw new Error('http2: header block too large');
    open.fragments.push(Buffer.from(fragment));
  }

  #finish(): Buffer {
    const open = this.#open as OpenBlock;
    this.#open = undefined;
    const fields = rewriteAuthority(this.#decoder.decode(Buffer.concat(open.fragments)));
    return encodeHeaderBlock({
      streamId: open.streamId,
      endStream: open.endStream,
      priority: open.priority,
      block: this.#encoder.encode(fields),
    });
  }
}
