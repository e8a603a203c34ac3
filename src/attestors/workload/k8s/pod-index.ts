/**
 * The shared pod index: one parsed kubelet pod list that every concurrent attestation
 * reads, refreshed on demand (SPIRE's `podlistfetcher.go`, after spire#5408 fixed 513 MiB
 * peaks caused by one `/pods` request per attestation).
 *
 * The attestor's policy over it (k8s.ts): a caller whose pod and container the current
 * snapshot lists is answered from it while it is younger than `maxAgeMs` (default 10 s: the
 * staleness bound on labels and other mutable pod fields); an unknown pod or container, or
 * an older snapshot, waits for the next shared fetch. So the kubelet sees at most one
 * request per `maxAgeMs` for known callers, and at most one per `minIntervalMs`
 * (`poll_retry_interval`) however many unknown callers there are.
 *
 * Invariants:
 * - never more than one kubelet request in flight (single-flight);
 * - request starts are at least `minIntervalMs` apart, whoever asks (the rate bound that a
 *   flood of callers from unknown containers cannot raise);
 * - every successful fetch becomes a snapshot with a generation number one above the
 *   previous; snapshots are immutable and shared by reference;
 * - a caller that already looked at generation N and did not find its container asks for
 *   a generation > N: it waits for the next shared fetch rather than triggering its own;
 * - a caller that has not seen the current snapshot gets it at once while it is younger
 *   than `maxAgeMs` (measured from the start of the request that produced it);
 * - a failed fetch rejects the callers that waited for it and leaves the snapshot alone;
 * - a fetch that failed in a way {@link PodIndexOptions.recheck} names (the kubelet refused
 *   the agent) is tried again every `recheck.intervalMs` with nobody waiting, until one
 *   succeeds: what the refusal broke (the agent's readiness) mends itself after the fix even
 *   when no workload asks. Never more often than the pacing above allows.
 */
import { ApiError, Code } from '../../../common/errors.ts';
import type { Logger } from '../../../common/logger.ts';
import { parsePodList, type PodList } from './pod-list.ts';

/** A monotonic time source with timers, so tests can drive the index's timing. */
export interface TimerClock {
  /** Milliseconds; only differences are used, so a monotonic origin is fine. */
  now(): number;
  /** Runs `callback` after `ms`; returns a function that cancels it. */
  setTimer(callback: () => void, ms: number): () => void;
}

/** Real time: `performance.now()` (immune to wall-clock jumps) and `setTimeout`. */
export const systemTimerClock: TimerClock = {
  now: () => performance.now(),
  setTimer: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    return () => clearTimeout(timer);
  },
};

/** One generation of the pod list. */
export interface PodSnapshot extends PodList {
  /** 1 for the first successful fetch, then +1 per successful fetch. */
  readonly generation: number;
  /** Clock time when the request that produced it started. */
  readonly fetchedAt: number;
}

/** Options of {@link createPodIndex}. */
export interface PodIndexOptions {
  /** Fetches the raw `/pods` body. The signal aborts only when the index is closed. */
  fetchPodList: (signal: AbortSignal) => Promise<string>;
  /** Minimum time between request starts (SPIRE `poll_retry_interval`). */
  minIntervalMs: number;
  /**
   * How long a snapshot is served to callers that have not seen it yet, measured from the
   * start of the request that produced it. Default `minIntervalMs`.
   */
  maxAgeMs?: number;
  clock?: TimerClock;
  logger?: Logger;
  /**
   * Failures to retry in the background: `when` picks them, `intervalMs` (at least
   * `minIntervalMs`) spaces the retries. Without it, a failed fetch is retried only when a
   * caller asks.
   */
  recheck?: { readonly intervalMs: number; readonly when: (err: ApiError) => boolean };
}

/** The shared pod index. */
export interface PodIndex {
  /**
   * The current snapshot if it is newer than `afterGeneration` and still fresh, without
   * waiting; otherwise undefined. The synchronous fast path of {@link PodIndex.next}.
   */
  peek(afterGeneration: number): PodSnapshot | undefined;
  /**
   * A snapshot newer than `afterGeneration` (0: any): the current one while fresh, else the
   * result of the next shared fetch. Rejects with the fetch's ApiError, with CANCELLED when
   * `signal` aborts, with UNAVAILABLE once the index is closed.
   */
  next(afterGeneration: number, signal: AbortSignal): Promise<PodSnapshot>;
  /** Kubelet requests started so far (for metrics and tests). */
  readonly fetches: number;
  /** Stops timers, aborts the request in flight and rejects every waiter. */
  close(): void;
}

interface Waiter {
  readonly after: number;
  readonly resolve: (snapshot: PodSnapshot) => void;
  readonly reject: (err: ApiError) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}

/** Creates the shared pod index over a pod-list fetcher. */
export function createPodIndex(options: PodIndexOptions): PodIndex {
  const { fetchPodList, minIntervalMs, logger } = options;
  const maxAgeMs = options.maxAgeMs ?? minIntervalMs;
  const clock = options.clock ?? systemTimerClock;

  let snapshot: PodSnapshot | undefined;
  let lastFetchStart: number | undefined;
  let inFlight: AbortController | undefined;
  let cancelTimer: (() => void) | undefined;
  let cancelRecheck: (() => void) | undefined;
  /** When the failure being rechecked was first seen; undefined while none is. */
  let failingSince: number | undefined;
  let fetches = 0;
  let closed = false;
  const waiters = new Set<Waiter>();

  function peek(after: number): PodSnapshot | undefined {
    const s = snapshot;
    if (s !== undefined && s.generation > after && clock.now() - s.fetchedAt < maxAgeMs) return s;
    return undefined;
  }

  function next(after: number, signal: AbortSignal): Promise<PodSnapshot> {
    if (closed) return Promise.reject(closedError());
    if (signal.aborted) return Promise.reject(cancelledError());
    const fresh = peek(after);
    if (fresh !== undefined) return Promise.resolve(fresh);
    return new Promise<PodSnapshot>((resolve, reject) => {
      const waiter: Waiter = {
        after,
        resolve,
        reject,
        signal,
        onAbort: () => {
          if (!waiters.delete(waiter)) return;
          reject(cancelledError());
          // Nobody left to serve: drop the pending start. A request already in flight
          // runs on; its result is cached for whoever asks next.
          if (waiters.size === 0 && cancelTimer !== undefined) {
            cancelTimer();
            cancelTimer = undefined;
          }
        },
      };
      waiters.add(waiter);
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      schedule();
    });
  }

  function schedule(): void {
    if (closed || inFlight !== undefined || cancelTimer !== undefined || waiters.size === 0) return;
    const delay = lastFetchStart === undefined ? 0 : lastFetchStart + minIntervalMs - clock.now();
    if (delay <= 0) {
      startFetch();
      return;
    }
    cancelTimer = clock.setTimer(() => {
      cancelTimer = undefined;
      if (waiters.size > 0) startFetch();
    }, delay);
  }

  function startFetch(): void {
    const started = clock.now();
    lastFetchStart = started;
    fetches++;
    const controller = new AbortController();
    inFlight = controller;
    // Through a promise chain so a fetcher that throws synchronously still settles here.
    Promise.resolve(controller.signal).then(fetchPodList).then(
      (text) => {
        if (inFlight !== controller) return;
        const parseStart = performance.now();
        const parsed = parsePodList(text);
        if (!parsed.ok) {
          finish(controller, undefined, new ApiError(Code.UNAVAILABLE, `kubelet: ${parsed.error}`));
          return;
        }
        const s: PodSnapshot = { ...parsed.value, generation: (snapshot?.generation ?? 0) + 1, fetchedAt: started };
        if (logger?.isLevelEnabled('debug')) {
          logger.debug(
            {
              generation: s.generation,
              pods: s.pods.size,
              terminal_pods: s.terminalPods,
              bytes: text.length,
              fetch_ms: clock.now() - started,
              parse_ms: performance.now() - parseStart,
            },
            'kubelet pod list fetched',
          );
        }
        if (s.podsWithoutUid > 0) logger?.warn({ count: s.podsWithoutUid }, 'kubelet listed pods without a UID; skipped');
        finish(controller, s, undefined);
      },
      (err: unknown) => {
        if (inFlight !== controller) return;
        finish(controller, undefined, err instanceof ApiError ? err : new ApiError(Code.UNAVAILABLE, `kubelet: ${String(err)}`));
      },
    );
  }

  function finish(controller: AbortController, result: PodSnapshot | undefined, error: ApiError | undefined): void {
    if (inFlight === controller) inFlight = undefined;
    if (result !== undefined) snapshot = result;
    noteRecheck(error);
    for (const waiter of waiters) {
      // A waiter that has already seen this generation (only possible with a bogus
      // `after`) keeps waiting for the next one.
      if (result !== undefined && result.generation <= waiter.after) continue;
      waiters.delete(waiter);
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      if (result !== undefined) waiter.resolve(result);
      else waiter.reject(error as ApiError);
    }
    schedule();
  }

  /** Arms, re-arms or ends the background retry after a fetch ended with `error` (or not). */
  function noteRecheck(error: ApiError | undefined): void {
    const { recheck } = options;
    if (recheck === undefined) return;
    if (error === undefined || !recheck.when(error)) {
      if (failingSince !== undefined) {
        if (error === undefined) logger?.info({ refused_for_ms: Math.round(clock.now() - failingSince) }, 'kubelet: the pod list is readable again');
        failingSince = undefined;
      }
      cancelRecheck?.();
      cancelRecheck = undefined;
      return;
    }
    if (failingSince === undefined) {
      failingSince = clock.now();
      logger?.info({ interval_ms: recheck.intervalMs, error: error.message }, 'kubelet: asking again in the background until it answers');
    }
    const intervalMs = Math.max(recheck.intervalMs, minIntervalMs);
    armRecheck(intervalMs, intervalMs);
  }

  /** Fetches once `intervalMs` have passed since the last request start (whoever made it). */
  function armRecheck(intervalMs: number, delayMs: number): void {
    cancelRecheck?.();
    cancelRecheck = clock.setTimer(() => {
      cancelRecheck = undefined;
      if (closed || inFlight !== undefined || cancelTimer !== undefined) return; // that fetch's end re-arms
      const wait = (lastFetchStart ?? -Infinity) + intervalMs - clock.now();
      if (wait > 0) armRecheck(intervalMs, wait);
      else startFetch();
    }, delayMs);
  }

  function close(): void {
    if (closed) return;
    closed = true;
    cancelTimer?.();
    cancelTimer = undefined;
    cancelRecheck?.();
    cancelRecheck = undefined;
    inFlight?.abort();
    inFlight = undefined;
    for (const waiter of waiters) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(closedError());
    }
    waiters.clear();
  }

  return {
    peek,
    next,
    get fetches() {
      return fetches;
    },
    close,
  };
}

function cancelledError(): ApiError {
  return new ApiError(Code.CANCELLED, 'k8s: waiting for the kubelet pod list was cancelled');
}

function closedError(): ApiError {
  return new ApiError(Code.UNAVAILABLE, 'k8s: the kubelet pod index is closed');
}
