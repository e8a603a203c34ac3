/**
 * Bounds the request bytes one connection can make the agent hold before they form a whole
 * gRPC message.
 *
 * grpc-js buffers each stream's request message until it is complete (up to
 * MAX_REQUEST_BYTES, 1 MiB since Envoy's SDS requests carry the whole Envoy node), and only
 * then calls the handler, so the per-caller call limit does not see half-sent requests. Without
 * a bound, a caller could open its 100 streams on each of its 32 connections and send each
 * request but its last byte: 3,200 × 1 MiB held by the agent, from one process.
 *
 * This reads the gRPC length-prefixed framing of each stream's DATA as it arrives (5 bytes:
 * flag and length, then the message) and keeps, per connection, the bytes of messages still
 * incomplete. A stream whose bytes would take the connection past the budget is reset with
 * ENHANCE_YOUR_CALM (its buffer is freed with it) and logged; complete messages cost nothing here once
 * grpc-js has them. A well-behaved client never meets the budget: it sends one whole message
 * per call, a few of them at a time.
 */
import { constants, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';

/** Incomplete request bytes one connection may hold: two of the largest requests. */
export const PARTIAL_REQUEST_BUDGET_BYTES = 2 * 1024 * 1024;

/** gRPC's length prefix: 1 byte compressed-flag, 4 bytes big-endian length. */
const PREFIX_BYTES = 5;

/**
 * Follows one stream's gRPC framing. `feed` returns how many of the chunk's bytes still belong
 * to an incomplete message after it, minus how many did before (the change in what the
 * connection holds for this stream).
 */
export class MessageFraming {
  /** Bytes of the current prefix seen (0–5). */
  #prefixSeen = 0;
  #length = 0;
  /** Bytes of the current message body still to come; -1 while reading a prefix. */
  #bodyLeft = -1;
  /** Bytes of the current incomplete message (prefix included) received so far. */
  #held = 0;

  get held(): number {
    return this.#held;
  }

  feed(chunk: Uint8Array): number {
    const before = this.#held;
    let i = 0;
    while (i < chunk.length) {
      if (this.#bodyLeft < 0) {
        // Prefix byte: index 0 is the flag, 1–4 the length.
        const byte = chunk[i] as number;
        if (this.#prefixSeen >= 1) this.#length = this.#length * 256 + byte;
        this.#prefixSeen++;
        this.#held++;
        i++;
        if (this.#prefixSeen === PREFIX_BYTES) {
          this.#bodyLeft = this.#length;
          if (this.#bodyLeft === 0) this.#reset();
        }
        continue;
      }
      const take = Math.min(this.#bodyLeft, chunk.length - i);
      this.#bodyLeft -= take;
      this.#held += take;
      i += take;
      if (this.#bodyLeft === 0) this.#reset();
    }
    return this.#held - before;
  }

  #reset(): void {
    this.#prefixSeen = 0;
    this.#length = 0;
    this.#bodyLeft = -1;
    this.#held = 0;
  }
}

/** How often at most one caller's resets are logged. */
const RESET_LOG_INTERVAL_MS = 10_000;

/** Options of {@link boundPartialRequests}. */
export interface PartialRequestOptions {
  readonly budgetBytes?: number;
  /** Where each reset is logged, at most once per caller per 10 s. */
  readonly logger: Logger;
  readonly clock: Clock;
  /** The caller PID behind a connection's tracking key (its socket's `remoteAddress`). */
  readonly pidOf: (peerKey: string) => number | undefined;
  /** Names the socket in the log line, e.g. `workload` or `admin`. */
  readonly label: string;
}

/** Applies the budget to every connection of `server`. */
export function boundPartialRequests(server: Http2Server, options: PartialRequestOptions): void {
  const budget = options.budgetBytes ?? PARTIAL_REQUEST_BUDGET_BYTES;
  const rate = new KeyedRateLimit({ intervalMs: RESET_LOG_INTERVAL_MS, clock: options.clock });
  const logReset = (session: ServerHttp2Session, heldBytes: number): void => {
    const pid = options.pidOf(String(session.socket?.remoteAddress ?? ''));
    const decision = rate.admit(String(pid ?? 'unknown'));
    if (!decision.admitted) return;
    options.logger.warn(
      { caller_pid: pid, held_bytes: heldBytes, budget_bytes: budget, suppressed: decision.suppressed },
      `${options.label} stream reset: the connection holds too many half-sent request bytes`,
    );
  };
  server.on('session', (session: ServerHttp2Session) => {
    let held = 0;
    session.on('stream', (stream: ServerHttp2Stream) => {
      const framing = new MessageFraming();
      let reset = false;
      stream.on('data', (chunk: Buffer) => {
        if (reset) return;
        const delta = framing.feed(chunk);
        held += delta;
        if (held <= budget) return;
        reset = true;
        held -= framing.held;
        logReset(session, held + framing.held);
        stream.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
      });
      stream.once('close', () => {
        if (!reset) held -= framing.held;
      });
    });
  });
}
