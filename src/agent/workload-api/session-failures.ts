/**
 * How a Workload API connection whose HTTP/2 session fails is logged.
 *
 * Every grpc-go client (go-spiffe included, since grpc-go 1.64) ends a connection with a
 * GOAWAY whose last-stream-ID names its own last stream. RFC 9113 §6.8 wants the receiver's
 * (a client's GOAWAY to a server without pushed streams says 0), so nghttp2 rejects the frame
 * as a connection error and Node destroys the session and its socket with ERR_HTTP2_ERROR
 * "Protocol error". Node reports every invalid frame the same way (same code and message), so
 * that close cannot be told from junk by the error. What can be told is whether the failure
 * cut calls in progress:
 * - none open (go-spiffe cancels each stream with RST_STREAM before its GOAWAY): the client was
 *   done; one debug line, not an error;
 * - calls cut: the client broke the protocol in the middle of them: "workload connection
 *   error" at info (a client fault, not the agent's), at most once per caller PID per
 *   {@link SESSION_FAILURE_LOG_INTERVAL_MS}, since any local process can provoke it.
 *
 * How cut calls are known: a failing session destroys each of its open streams with the
 * session's own error object before it emits that error itself, so the streams that received
 * exactly that object are the ones it cut.
 */
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';

/** How often at most one caller's connection errors are logged. */
export const SESSION_FAILURE_LOG_INTERVAL_MS = 10_000;

/** Options of {@link watchSessionFailures}. */
export interface SessionFailureOptions {
  readonly logger: Logger;
  /** The caller PID behind a connection's tracking key (its socket's `remoteAddress`). */
  readonly pidOf: (peerKey: string) => number | undefined;
  readonly clock: Clock;
}

/** Whether a socket error is its HTTP/2 session's failure (logged by {@link watchSessionFailures}). */
export function isSessionFailure(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code.startsWith('ERR_HTTP2_');
}

/** Logs the failure of every session of `server` by whether it cut calls in progress. */
export function watchSessionFailures(server: Http2Server, opts: SessionFailureOptions): void {
  const rate = new KeyedRateLimit({ intervalMs: SESSION_FAILURE_LOG_INTERVAL_MS, clock: opts.clock });
  server.on('session', (session: ServerHttp2Session) => {
    // Read now: the tracker forgets the connection when its socket closes, before the session's error.
    const pid = opts.pidOf(String(session.socket.remoteAddress));
    let lastStreamError: unknown;
    let streamsWithIt = 0;
    const onStreamError = (err: unknown): void => {
      streamsWithIt = err === lastStreamError ? streamsWithIt + 1 : 1;
      lastStreamError = err;
    };
    session.on('stream', (stream) => stream.once('error', onStreamError));
    session.once('error', (err: Error) => {
      if (!isSessionFailure(err)) return;
      const cut = err === lastStreamError ? streamsWithIt : 0;
      if (cut === 0) {
        opts.logger.debug({ caller_pid: pid, http2_error: err.message }, 'workload connection ended with no call open');
        return;
      }
      const decision = rate.admit(String(pid ?? '-'));
      if (!decision.admitted) return;
      opts.logger.info(
        { caller_pid: pid, error: err.message, calls_cut: cut, ...(decision.suppressed > 0 ? { suppressed_since_last: decision.suppressed } : {}) },
        'workload connection error',
      );
    });
  });
}
