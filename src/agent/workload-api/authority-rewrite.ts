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
 * header block is decoded and re-encoded, every other frame passes through unchanged, piece
 * by piece as it arrives (see http2-frame-reader.ts for what is buffered and checked).
 */
import { firstBlockAuthorities } from './hpack-authority.ts';
import { HpackBudget } from './hpack-budget.ts';
import { HpackDecoder, HpackEncoder, type HeaderField } from './hpack.ts';
import { Http2FrameReader, Http2InboundError, type HeaderBlock } from './http2-frame-reader.ts';
import { encodeHeaderBlock, FrameType, Http2ErrorCode, type FrameHeader } from './http2-frames.ts';

/** What replaces an authority Node would reject. */
export const REPLACEMENT_AUTHORITY = 'localhost';

/**
 * Whether nghttp2 accepts `value` as `:authority`/`host`: only RFC 3986 authority
 * characters (unreserved, sub-delims, ":", "@", "[", "]", "%").
 */
export function isAcceptableAuthority(value: string): boolean {
  return /^[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]*$/.test(value);
}

/**
 * Whether a connection's first header block carries an authority Node would reject: the
 * block is charged to a fresh budget first (over budget: ENHANCE_YOUR_CALM, before any
 * decoding), then only its authority fields are decoded (malformed: COMPRESSION_ERROR).
 */
export function firstBlockNeedsRewrite(block: Buffer): boolean {
  try {
    new HpackBudget().charge(block);
  } catch (err) {
    throw new Http2InboundError(Http2ErrorCode.ENHANCE_YOUR_CALM, (err as Error).message);
  }
  let authorities: string[];
  try {
    authorities = firstBlockAuthorities(block);
  } catch (err) {
    throw new Http2InboundError(Http2ErrorCode.COMPRESSION_ERROR, (err as Error).message);
  }
  return authorities.some((value) => !isAcceptableAuthority(value));
}

/** The fields with every rejected authority replaced by {@link REPLACEMENT_AUTHORITY}. */
export function rewriteAuthority(fields: readonly HeaderField[]): HeaderField[] {
  return fields.map((f) =>
    (f.name === ':authority' || f.name === 'host') && !isAcceptableAuthority(f.value) ? { ...f, value: REPLACEMENT_AUTHORITY } : f,
  );
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
  readonly #budget = new HpackBudget();
  readonly #reader: Http2FrameReader;
  #out: Buffer[] = [];

  constructor() {
    this.#reader = new Http2FrameReader({
      preface: (raw) => this.#out.push(raw),
      frame: (header, raw) => {
        if (!isHeaderFrame(header)) this.#out.push(raw);
      },
      payload: (header, piece) => {
        if (!isHeaderFrame(header)) this.#out.push(piece);
      },
      headerBlock: (block) => this.#out.push(this.#reencode(block)),
    });
  }

  /**
   * Feeds received bytes; returns what to forward, in order (possibly nothing). Throws
   * {@link Http2InboundError} on a protocol violation or an over-budget header block.
   */
  push(chunk: Buffer): Buffer[] {
    this.#out = [];
    this.#reader.push(chunk);
    return this.#out;
  }

  #reencode(block: HeaderBlock): Buffer {
    const fields = decodeBounded(this.#budget, this.#decoder, block.block);
    return encodeHeaderBlock({
      streamId: block.streamId,
      endStream: block.endStream,
      priority: block.priority,
      block: this.#encoder.encode(rewriteAuthority(fields)),
    });
  }
}

function isHeaderFrame(header: FrameHeader): boolean {
  return header.type === FrameType.HEADERS || header.type === FrameType.CONTINUATION;
}

/**
 * Decodes a header block after charging it to `budget`: an over-budget block throws
 * ENHANCE_YOUR_CALM before any decoding, a malformed one COMPRESSION_ERROR.
 */
function decodeBounded(budget: HpackBudget, decoder: HpackDecoder, block: Buffer): HeaderField[] {
  try {
    budget.charge(block);
  } catch (err) {
    throw new Http2InboundError(Http2ErrorCode.ENHANCE_YOUR_CALM, (err as Error).message);
  }
  try {
    return decoder.decode(block);
  } catch (err) {
    throw new Http2InboundError(Http2ErrorCode.COMPRESSION_ERROR, `hpack: ${(err as Error).message}`);
  }
}
