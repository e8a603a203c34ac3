/**
 * Raw HTTP/2 client bytes for tests that speak to the Workload API socket below gRPC: one
 * frame (optionally only its 9-byte header, announcing a payload that never comes), and the
 * client's SETTINGS and SETTINGS ACK.
 */
import { FrameFlag, FrameType } from '../../src/agent/workload-api/http2-frames.ts';

/** A frame with `payload`, or only the header of one announcing `payload` bytes when it is a number. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer | number): Buffer {
  const length = typeof payload === 'number' ? payload : payload.length;
  const h = Buffer.alloc(9);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return typeof payload === 'number' ? h : Buffer.concat([h, payload]);
}

/** An empty SETTINGS frame (a client's preface announcing defaults). */
export const SETTINGS = frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0));
/** A SETTINGS acknowledgement. */
export const SETTINGS_ACK = frame(FrameType.SETTINGS, FrameFlag.ACK, 0, Buffer.alloc(0));
