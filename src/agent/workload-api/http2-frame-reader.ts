/**
 * A streaming reader of a client's inbound HTTP/2 bytes (RFC 9113 §3.4, §4, §6) that holds a
 * bounded amount of memory whatever the client sends.
 *
 * Invariants:
 * - Only frame headers (9 bytes) and header blocks (HEADERS + CONTINUATION, at most
 *   `maxHeaderBlock` bytes) are ever buffered; every other payload is handed on in the pieces
 *   it arrived in, so a frame announcing 16 MiB costs nothing but is refused at its header.
 * - Every frame is checked against the server's SETTINGS_MAX_FRAME_SIZE the moment its header
 *   is complete; the connection preface must be followed by a SETTINGS frame (§3.4), so bytes
 *   that are not HTTP/2 are refused within the first 33.
 * - A violation throws {@link Http2InboundError} carrying the GOAWAY error code to close with;
 *   the reader is unusable afterwards.
 *
 * The reader is pure: it never touches a socket. What to do with the bytes is the sink's.
 */
import {
  CONNECTION_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  FRAME_HEADER_LENGTH,
  FrameFlag,
  FrameType,
  Http2ErrorCode,
  parseHeadersPayload,
  readFrameHeader,
  type FrameHeader,
} from './http2-frames.ts';

/** The largest header block (compressed) a Workload API client may send: gRPC metadata is ~1 KiB. */
export const DEFAULT_MAX_HEADER_BLOCK = 16 * 1024;

/** A protocol violation, with the HTTP/2 error code the connection should be closed with. */
export class Http2InboundError extends Error {
  readonly errorCode: number;
  constructor(errorCode: number, message: string) {
    super(`http2: ${message}`);
    this.name = 'Http2InboundError';
    this.errorCode = errorCode;
  }
}

/** One complete header block and what its HEADERS frame said besides. */
export interface HeaderBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  /** The 5 PRIORITY bytes of the HEADERS frame, when it had them. */
  readonly priority: Buffer | undefined;
  /** The block fragments concatenated (padding removed). */
  readonly block: Buffer;
}

/** Where the reader hands what it read. Every byte after the preface reaches exactly one of frame/payload. */
export interface FrameSink {
  /** The connection preface (24 bytes), once complete. */
  preface(raw: Buffer): void;
  /** A frame's 9 header bytes, once complete and checked. */
  frame(header: FrameHeader, raw: Buffer): void;
  /** A piece of the current frame's payload (zero or more per frame, in order). */
  payload(header: FrameHeader, piece: Buffer): void;
  /** A complete header block, after the payload of its last frame. */
  headerBlock(block: HeaderBlock): void;
}

/** Limits of a {@link Http2FrameReader}. */
export interface FrameReaderLimits {
  /** The SETTINGS_MAX_FRAME_SIZE the server announced (default 16384: we announce none). */
  readonly maxFrameSize?: number;
  readonly maxHeaderBlock?: number;
}

interface OpenBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  priority: Buffer | undefined;
  readonly fragments: Buffer[];
  size: number;
}

/** Reads one client's inbound bytes, from the connection preface on. */
export class Http2FrameReader {
  readonly #sink: FrameSink;
  readonly #maxFrameSize: number;
  readonly #maxHeaderBlock: number;
  /** Bytes of the preface matched so far (24 = done). */
  #prefaceMatched = 0;
  readonly #headerBytes = Buffer.alloc(FRAME_HEADER_LENGTH);
  #headerFilled = 0;
  /** The frame whose payload is being read, and how much of it is left. */
  #current: FrameHeader | undefined;
  #remaining = 0;
  /** Payload pieces of the current HEADERS/CONTINUATION frame (bounded by the block limit). */
  #framePieces: Buffer[] = [];
  #open: OpenBlock | undefined;
  #framesSeen = 0;
  #failed: Http2InboundError | undefined;

  constructor(sink: FrameSink, limits: FrameReaderLimits = {}) {
    this.#sink = sink;
    this.#maxFrameSize = limits.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.#maxHeaderBlock = limits.maxHeaderBlock ?? DEFAULT_MAX_HEADER_BLOCK;
  }

  /** Feeds received bytes. Throws {@link Http2InboundError} on a violation (and on every later call). */
  push(chunk: Buffer): void {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#failed = err instanceof Http2InboundError ? err : new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, (err as Error).message);
      throw this.#failed;
    }
  }

  #consume(chunk: Buffer): void {
    let offset = 0;
    if (this.#prefaceMatched < CONNECTION_PREFACE.length) {
      const take = Math.min(chunk.length, CONNECTION_PREFACE.length - this.#prefaceMatched);
      const expected = CONNECTION_PREFACE.subarray(this.#prefaceMatched, this.#prefaceMatched + take);
      if (!chunk.subarray(0, take).equals(expected)) throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'bad connection preface');
      this.#prefaceMatched += take;
      offset = take;
      if (this.#prefaceMatched === CONNECTION_PREFACE.length) this.#sink.preface(CONNECTION_PREFACE);
    }
    while (offset < chunk.length) {
      if (this.#current === undefined) {
        const take = Math.min(chunk.length - offset, FRAME_HEADER_LENGTH - this.#headerFilled);
        chunk.copy(this.#headerBytes, this.#headerFilled, offset, offset + take);
        this.#headerFilled += take;
        offset += take;
        if (this.#headerFilled === FRAME_HEADER_LENGTH) this.#startFrame();
        continue;
      }
      const take = Math.min(chunk.length - offset, this.#remaining);
      const piece = chunk.subarray(offset, offset + take);
      offset += take;
      this.#remaining -= take;
      this.#sink.payload(this.#current, piece);
      if (isHeaderFrame(this.#current)) this.#framePieces.push(piece);
      if (this.#remaining === 0) this.#endFrame();
    }
  }

  #startFrame(): void {
    this.#headerFilled = 0;
    const header = readFrameHeader(this.#headerBytes) as FrameHeader;
    this.#check(header);
    this.#framesSeen += 1;
    this.#sink.frame(header, Buffer.from(this.#headerBytes));
    this.#current = header;
    this.#remaining = header.length;
    if (header.length === 0) this.#endFrame();
  }

  /** The checks that must pass before a single payload byte is accepted. */
  #check(header: FrameHeader): void {
    if (header.length > this.#maxFrameSize) {
      throw new Http2InboundError(
        Http2ErrorCode.FRAME_SIZE_ERROR,
        `frame of ${header.length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${this.#maxFrameSize}`,
      );
    }
    if (this.#framesSeen === 0 && (header.type !== FrameType.SETTINGS || (header.flags & FrameFlag.ACK) !== 0)) {
      throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'the connection preface is not followed by a SETTINGS frame');
    }
    if (header.type === FrameType.SETTINGS) {
      const ack = (header.flags & FrameFlag.ACK) !== 0;
      if (header.streamId !== 0) throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
      if (ack ? header.length !== 0 : header.length % 6 !== 0) {
        throw new Http2InboundError(Http2ErrorCode.FRAME_SIZE_ERROR, `SETTINGS frame of ${header.length} bytes`);
      }
    }
    const open = this.#open;
    if (open !== undefined) {
      if (header.type !== FrameType.CONTINUATION || header.streamId !== open.streamId) {
        throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'header block interrupted by another frame');
      }
    } else if (header.type === FrameType.CONTINUATION) {
      throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
    }
    if (isHeaderFrame(header)) {
      if (header.streamId === 0) throw new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
      const size = (open?.size ?? 0) + header.length;
      if (size > this.#maxHeaderBlock) {
        throw new Http2InboundError(Http2ErrorCode.ENHANCE_YOUR_CALM, `header block over ${this.#maxHeaderBlock} bytes`);
      }
    }
  }

  #endFrame(): void {
    const header = this.#current as FrameHeader;
    this.#current = undefined;
    if (!isHeaderFrame(header)) return;
    const payload = this.#framePieces.length === 1 ? (this.#framePieces[0] as Buffer) : Buffer.concat(this.#framePieces);
    this.#framePieces = [];
    let open = this.#open;
    let fragment = payload;
    if (header.type === FrameType.HEADERS) {
      const parsed = parseHeadersPayload(header.flags, payload);
      fragment = parsed.fragment;
      open = {
        streamId: header.streamId,
        endStream: (header.flags & FrameFlag.END_STREAM) !== 0,
        // Copied: `payload` may be a view of a socket chunk we must not keep alive.
        priority: parsed.priority === undefined ? undefined : Buffer.from(parsed.priority),
        fragments: [],
        size: 0,
      };
      this.#open = open;
    }
    const block = open as OpenBlock;
    block.fragments.push(Buffer.from(fragment));
    block.size += header.length;
    if ((header.flags & FrameFlag.END_HEADERS) === 0) return;
    this.#open = undefined;
    const bytes = block.fragments.length === 1 ? (block.fragments[0] as Buffer) : Buffer.concat(block.fragments);
    this.#sink.headerBlock({ streamId: block.streamId, endStream: block.endStream, priority: block.priority, block: bytes });
  }
}

function isHeaderFrame(header: FrameHeader): boolean {
  return header.type === FrameType.HEADERS || header.type === FrameType.CONTINUATION;
}
