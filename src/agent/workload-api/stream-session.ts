/**
 * The life of one server stream of the Workload API.
 *
 * Invariants:
 * - The server never ends a stream with status OK: it ends when the client cancels, or through
 *   {@link StreamSession.fail} with an error status (PermissionDenied, Unavailable on shutdown…).
 *   The one exception is a bidirectional stream (SDS) whose client finished sending: it ends
 *   with OK through {@link StreamSession.complete}, as in SPIRE.
 * - A client cancel is recorded (metrics, call log) as OK once a response has reached the
 *   transport, and as Canceled before: go-spiffe's one-shot fetches (FetchX509SVID,
 *   FetchX509Bundles, FetchJWTBundles) and every source's Close() read their answer and then
 *   cancel, which is their success.
 * - Cleanup (unsubscribe, abort of in-flight attestation, registry removal) runs exactly once,
 *   whichever way the stream ends.
 * - Slow readers do not queue every update: while a write waits for the transport to drain,
 *   only the latest message is kept (each message carries the full state, so the latest wins).
 * - Messages are written in the order sent; a message of 1 MiB or more is written on a later
 *   turn of the event loop, never in the turn that sent it.
 */
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import type { EncodedMessage } from './encode.ts';
import type { WorkloadActivity } from './workload-activity.ts';
import type { WorkloadState } from '../manager/workload-state.ts';
import type { IdentitySource } from './identity-source.ts';
import type { Selector } from '../../common/selector.ts';

/** Messages from this size on are written on a later turn of the event loop (see #write). */
export const DEFER_WRITE_FROM_BYTES = 1024 * 1024;

/** How a stream ended, for the call log. */
export interface StreamEnd {
  readonly code: Code;
  readonly message: string;
}

/** A client cancel before any response reached the transport. */
const CANCELLED_EARLY: StreamEnd = Object.freeze({ code: Code.CANCELLED, message: 'cancelled by the client' });
/** A client cancel after at least one response: the client had its answer. */
const CANCELLED_ANSWERED: StreamEnd = Object.freeze({ code: Code.OK, message: 'cancelled by the client after a response' });

/** The open streams of a server; once closed, every new stream fails at once. */
export class StreamRegistry {
  readonly #open = new Set<StreamSession>();
  #closedWith: ApiError | undefined;

  /** Open streams. */
  get size(): number {
    return this.#open.size;
  }

  /** Tracks a new stream (or fails it if the registry is closed). */
  add(session: StreamSession): void {
    if (this.#closedWith !== undefined) session.fail(this.#closedWith);
    else this.#open.add(session);
  }

  /** Forgets an ended stream. */
  delete(session: StreamSession): void {
    this.#open.delete(session);
  }

  /** Ends every open stream, and every later one, with `err`. */
  closeAll(err: ApiError): void {
    this.#closedWith = err;
    for (const session of [...this.#open]) session.fail(err);
  }
}

/**
 * The reason every ended stream's signal carries. One shared object: `abort()` without a
 * reason builds a DOMException with a captured stack for every stream (measured: about 20 µs
 * per connection under new-connection churn, 0.7% of the agent's CPU).
 */
const STREAM_ENDED = new ApiError(Code.CANCELLED, 'workload api: the stream has ended');

/** The server side of a server-streaming or bidirectional call. */
export type StreamCall = ServerWritableStream<unknown, EncodedMessage> | ServerDuplexStream<unknown, EncodedMessage>;

/** One open server stream. */
export class StreamSession {
  readonly #call: StreamCall;
  readonly #registry: StreamRegistry;
  readonly #abort = new AbortController();
  readonly #cleanups: Array<() => void> = [];
  readonly #onEnd: (end: StreamEnd) => void;
  #ended = false;
  /** Whether grpc-js has called back a write: a response reached the transport. */
  #answered = false;
  #writing = false;
  #pending: EncodedMessage | undefined;
  /** Where sent bytes are counted once the caller is known (see {@link observe}). */
  #activity: { readonly registry: WorkloadActivity; readonly pid: number } | undefined;

  constructor(call: StreamCall, registry: StreamRegistry, onEnd: (end: StreamEnd) => void) {
    this.#call = call;
    this.#registry = registry;
    this.#onEnd = onEnd;
    call.on('cancelled', () => this.#finish(this.#answered ? CANCELLED_ANSWERED : CANCELLED_EARLY));
    registry.add(this);
  }

  /** Aborted when the stream ends; pass it to anything slow done on the stream's behalf. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Whether the stream has ended (no more sends). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Registers cleanup to run once when the stream ends (at once if it already has). */
  onEnd(cleanup: () => void): void {
    if (this.#ended) cleanup();
    else this.#cleanups.push(cleanup);
  }

  /**
   * Counts this stream and the bytes it sends for its caller in `debug workloads`, from now
   * until it ends. Called once the caller is admitted.
   */
  observe(registry: WorkloadActivity | undefined, pid: number): void {
    if (registry === undefined || this.#ended || this.#activity !== undefined) return;
    this.#activity = { registry, pid };
    registry.stream(pid, 1);
    this.onEnd(() => registry.stream(pid, -1));
  }

  /** Sends a message now, or replaces the one waiting for the transport to drain. */
  send(bytes: EncodedMessage): void {
    if (this.#ended) return;
    if (this.#writing) {
      this.#pending = bytes;
      return;
    }
    this.#write(bytes);
  }

  #write(bytes: EncodedMessage): void {
    this.#writing = true;
    this.#activity?.registry.sent(this.#activity.pid, bytes.length);
    const write = (): void => {
      if (this.#ended) return;
      this.#call.write(bytes, () => {
        this.#answered = true;
        this.#writing = false;
        const next = this.#pending;
        this.#pending = undefined;
        if (next !== undefined && !this.#ended) this.#write(next);
      });
    };
    // Why defer large messages: grpc-js copies each message into a framed buffer of its own
    // (about 5 ms for 6 MB), and one state change notifies every stream with equal selectors
    // in the same turn. One stream per turn lets other callers in between.
    if (bytes.length >= DEFER_WRITE_FROM_BYTES) setImmediate(write);
    else write();
  }

  /** Ends the stream with an error status (anything not an ApiError becomes Internal). */
  fail(err: unknown): void {
    if (this.#ended) return;
    const status = toGrpcStatus(err);
    this.#finish({ code: status.code, message: status.details });
    // grpc-js turns an 'error' event on a server stream into its final status (after any
    // message already written has been flushed).
    this.#call.emit('error', status);
  }

  /** Ends a bidirectional stream with status OK once its client has finished sending. */
  complete(): void {
    if (this.#ended) return;
    this.#finish({ code: Code.OK, message: 'OK' });
    this.#call.end();
  }

  #finish(end: StreamEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#pending = undefined;
    this.#registry.delete(this);
    this.#abort.abort(STREAM_ENDED);
    for (const cleanup of this.#cleanups.splice(0)) {
      try {
        cleanup();
      } catch {
        // A failing unsubscribe must not stop the others; the source logs its own errors.
      }
    }
    this.#onEnd(end);
  }
}

/**
 * Subscribes a stream to the identity source until the stream ends. The listener may run
 * synchronously inside subscribe() (a cached state), so unsubscribing copes with both orders.
 */
export function subscribeSession(
  source: IdentitySource,
  session: StreamSession,
  selectors: readonly Selector[],
  onState: (state: WorkloadState) => void,
): void {
  let unsubscribe: () => void;
  try {
    unsubscribe = source.subscribe(selectors, (state) => {
      if (!session.ended) onState(state);
    });
  } catch (err) {
    session.fail(toApiError(err));
    return;
  }
  session.onEnd(unsubscribe);
}
