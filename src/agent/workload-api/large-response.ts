/**
 * Warnings for Workload API responses over gRPC's default 4 MiB client receive limit.
 *
 * The agent never refuses a response for its size (SPIRE sends every SVID a workload is
 * entitled to, whatever the total): a client with the default limit then fails on its own
 * side with RESOURCE_EXHAUSTED, and the operator needs to know which caller must raise its
 * receive limit. So the warning names the caller and how many SVIDs (or bundles) made the
 * response large.
 *
 * Why rate-limited: a stream pushes the full state on every rotation, and a client failing on
 * its receive limit retries with backoff; both would repeat the same warning. One warning per
 * method and caller PID per interval is kept, with a count of those suppressed since.
 */
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';

/** gRPC's default receive limit (grpc-go, grpc-java, grpc-js, and the C core behind Python). */
export const DEFAULT_CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024;

/** How often the same method and caller PID may be warned about. */
export const LARGE_RESPONSE_WARN_INTERVAL_MS = 5 * 60_000;

/** What the warnings are sent for: one response about to be written to one caller. */
export interface LargeResponse {
  readonly method: string;
  /** The caller's PID (0 when unknown). */
  readonly pid: number;
  readonly bytes: number;
  /** What the response carries, e.g. `{ svids: 5000 }`; computed only when a warning is logged. */
  readonly counts: () => Readonly<Record<string, number>>;
}

/** The one method handlers call; see {@link LargeResponseWarnings}. */
export interface LargeResponseLog {
  /** Logs a warning when the response is over the limit (rate-limited). Returns whether it is over. */
  check(response: LargeResponse): boolean;
}

/** Options of {@link LargeResponseWarnings}; defaults are filled in the constructor. */
export interface LargeResponseWarningsOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  /** Default {@link DEFAULT_CLIENT_RECEIVE_LIMIT}. */
  readonly limitBytes?: number;
  /** Default {@link LARGE_RESPONSE_WARN_INTERVAL_MS}. */
  readonly intervalMs?: number;
}

/** Rate-limited warnings for responses over the default client receive limit. */
export class LargeResponseWarnings implements LargeResponseLog {
  readonly #logger: Logger;
  readonly #limitBytes: number;
  /** One warning per `method:pid` per interval. */
  readonly #rate: KeyedRateLimit;

  constructor(opts: LargeResponseWarningsOptions) {
    this.#logger = opts.logger;
    this.#limitBytes = opts.limitBytes ?? DEFAULT_CLIENT_RECEIVE_LIMIT;
    this.#rate = new KeyedRateLimit({ intervalMs: opts.intervalMs ?? LARGE_RESPONSE_WARN_INTERVAL_MS, clock: opts.clock });
  }

  check(response: LargeResponse): boolean {
    if (response.bytes <= this.#limitBytes) return false;
    const decision = this.#rate.admit(`${response.method}:${response.pid}`);
    if (!decision.admitted) return true;
    this.#logger.warn(
      {
        method: response.method,
        caller_pid: response.pid,
        ...response.counts(),
        response_bytes: response.bytes,
        limit_bytes: this.#limitBytes,
        ...(decision.suppressed > 0 ? { suppressed_since_last_warning: decision.suppressed } : {}),
      },
      `workload api: response is over the ${this.#limitBytes}-byte default gRPC receive limit; the client needs a larger receive limit (grpc.max_receive_message_length, MaxCallRecvMsgSize) or fewer entries`,
    );
    return true;
  }
}
