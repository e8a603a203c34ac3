/**
 * Raw HTTP/2 bytes for attack and probe connections: the client preface, frame headers, and
 * a reader that finds the GOAWAY error code in what the server sends back.
 */
import { createConnection, type Socket } from 'node:net';

/** What every HTTP/2 client sends first (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME_DATA = 0x0;
export const FRAME_HEADERS = 0x1;
export const FRAME_SETTINGS = 0x4;
export const FRAME_GOAWAY = 0x7;
export const FLAG_END_HEADERS = 0x4;
/** The largest payload length a frame header can announce (2^24 − 1). */
export const MAX_FRAME_LENGTH = 16_777_215;

/** A 9-byte frame header. */
export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fff_ffff, 5);
  return h;
}

/** An empty SETTINGS frame. */
export const EMPTY_SETTINGS = frameHeader(0, FRAME_SETTINGS, 0, 0);

/** Wall-clock ms with sub-ms precision, comparable across processes on one machine. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Reads server frames from a byte stream and remembers the first GOAWAY's error code. */
export class ServerFrameReader {
  #pending: Buffer = Buffer.alloc(0);
  goawayCode: number | undefined;
  bytes = 0;

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.goawayCode !== undefined) return;
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    let offset = 0;
    while (this.#pending.length - offset >= 9) {
      const length = this.#pending.readUIntBE(offset, 3);
      const type = this.#pending[offset + 3];
      if (this.#pending.length - offset < 9 + length) break;
      if (type === FRAME_GOAWAY && length >= 8) {
        this.goawayCode = this.#pending.readUInt32BE(offset + 9 + 4);
        break;
      }
      offset += 9 + length;
    }
    this.#pending = this.#pending.subarray(offset);
  }
}

/** A raw connection and when (epoch ms) and how it ended. */
export interface RawConnection {
  readonly socket: Socket;
  readonly reader: ServerFrameReader;
  /** When the peer ended or reset it (undefined while open or when we closed it). */
  closedByPeerAt: number | undefined;
  error: string | undefined;
  /** Whether we destroyed it ourselves. */
  closedByUs: boolean;
}

/** Opens a Unix-socket connection; resolves once connected, and tracks how it ends. */
export function openRaw(socketPath: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const conn: RawConnection = { socket, reader: new ServerFrameReader(), closedByPeerAt: undefined, error: undefined, closedByUs: false };
    const ended = (): void => {
      if (!conn.closedByUs && conn.closedByPeerAt === undefined) conn.closedByPeerAt = epochMs();
    };
    socket.on('data', (d: Buffer) => conn.reader.push(d));
    socket.on('end', () => {
      ended();
      socket.destroy();
    });
    socket.on('close', ended);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      conn.error ??= err.code ?? err.message;
      ended();
    });
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

/** Destroys a raw connection from our side. */
export function closeRaw(conn: RawConnection): void {
  if (conn.closedByPeerAt === undefined) conn.closedByUs = true;
  conn.socket.destroy();
}
