/**
 * Just enough HTTP/2 framing (RFC 9113 §4, §6.2, §6.10) to find and rebuild the header
 * blocks a client sends: the connection preface, 9-byte frame headers, HEADERS with its
 * PADDED and PRIORITY flags, CONTINUATION, and the GOAWAY the agent sends when it closes a
 * connection before HTTP/2 has started. Everything else is opaque bytes.
 */

/** What every HTTP/2 client sends first (RFC 9113 §3.4). */
export const CONNECTION_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME_HEADER_LENGTH = 9;
export const FrameType = { HEADERS: 0x1, SETTINGS: 0x4, GOAWAY: 0x7, CONTINUATION: 0x9 } as const;
export const FrameFlag = { ACK: 0x1, END_STREAM: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
/** SETTINGS_MAX_FRAME_SIZE's initial value: the largest frame a peer must accept by default. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;

/** A frame's 9-byte header. */
export interface FrameHeader {
  /** Payload length (24 bits). */
  readonly length: number;
  readonly type: number;
  readonly flags: number;
  /** Stream identifier (31 bits; the reserved bit is dropped). */
  readonly streamId: number;
}

/** The header of the frame at `offset`, or undefined if fewer than 9 bytes are there. */
export function readFrameHeader(buf: Buffer, offset = 0): FrameHeader | undefined {
  if (buf.length - offset < FRAME_HEADER_LENGTH) return undefined;
  return {
    length: buf.readUIntBE(offset, 3),
    type: buf[offset + 3] as number,
    flags: buf[offset + 4] as number,
    streamId: buf.readUInt32BE(offset + 5) & 0x7fff_ffff,
  };
}

/** The parts of a HEADERS frame's payload: its header block fragment and PRIORITY fields. */
export interface HeadersPayload {
  readonly fragment: Buffer;
  /** The 5 bytes of stream dependency and weight, when the PRIORITY flag is set. */
  readonly priority: Buffer | undefined;
}

/** Splits a HEADERS payload, dropping padding; throws when the padding or priority fields do not fit. */
export function parseHeadersPayload(flags: number, payload: Buffer): HeadersPayload {
  let start = 0;
  let end = payload.length;
  if ((flags & FrameFlag.PADDED) !== 0) {
    if (payload.length < 1) throw new Error('http2: PADDED HEADERS frame without a pad length');
    start = 1;
    end -= payload[0] as number;
  }
  let priority: Buffer | undefined;
  if ((flags & FrameFlag.PRIORITY) !== 0) {
    priority = payload.subarray(start, start + 5);
    start += 5;
  }
  if (end < start) throw new Error('http2: HEADERS padding or priority exceeds the frame');
  return { fragment: payload.subarray(start, end), priority };
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fff_ffff, 5);
  return header;
}

/** What a rebuilt header block keeps of the original HEADERS frame. */
export interface HeaderBlockFrame {
  readonly streamId: number;
  readonly endStream: boolean;
  readonly priority: Buffer | undefined;
  readonly block: Buffer;
}

/**
 * One unpadded HEADERS frame carrying `block`, followed by CONTINUATION frames when it does
 * not fit in `maxFrameSize`; END_HEADERS is set on the last frame.
 */
export function encodeHeaderBlock(frame: HeaderBlockFrame, maxFrameSize = DEFAULT_MAX_FRAME_SIZE): Buffer {
  const parts: Buffer[] = [];
  const priority = frame.priority;
  const firstRoom = maxFrameSize - (priority?.length ?? 0);
  let offset = Math.min(firstRoom, frame.block.length);
  let flags = (frame.endStream ? FrameFlag.END_STREAM : 0) | (priority !== undefined ? FrameFlag.PRIORITY : 0);
  if (offset === frame.block.length) flags |= FrameFlag.END_HEADERS;
  parts.push(frameHeader(offset + (priority?.length ?? 0), FrameType.HEADERS, flags, frame.streamId));
  if (priority !== undefined) parts.push(priority);
  parts.push(frame.block.subarray(0, offset));
  while (offset < frame.block.length) {
    const end = Math.min(offset + maxFrameSize, frame.block.length);
    const last = end === frame.block.length;
    parts.push(frameHeader(end - offset, FrameType.CONTINUATION, last ? FrameFlag.END_HEADERS : 0, frame.streamId));
    parts.push(frame.block.subarray(offset, end));
    offset = end;
  }
  return Buffer.concat(parts);
}

/** An empty SETTINGS frame: a server connection preface announcing only default values. */
export const EMPTY_SETTINGS_FRAME = Buffer.from([0, 0, 0, FrameType.SETTINGS, 0, 0, 0, 0, 0]);

/** Whether a frame is a SETTINGS acknowledgement. */
export function isSettingsAck(header: FrameHeader): boolean {
  return header.type === FrameType.SETTINGS && (header.flags & FrameFlag.ACK) !== 0 && header.streamId === 0;
}

/** HTTP/2 error codes the agent sends in GOAWAY (RFC 9113 §7). */
export const Http2ErrorCode = { NO_ERROR: 0x0, PROTOCOL_ERROR: 0x1, FRAME_SIZE_ERROR: 0x6, COMPRESSION_ERROR: 0x9, ENHANCE_YOUR_CALM: 0xb } as const;

/** A GOAWAY frame for a connection on which no stream was processed (last stream ID 0). */
export function goawayFrame(errorCode: number): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER_LENGTH + 8);
  frame.writeUIntBE(8, 0, 3);
  frame[3] = FrameType.GOAWAY;
  frame.writeUInt32BE(errorCode >>> 0, FRAME_HEADER_LENGTH + 4);
  return frame;
}
