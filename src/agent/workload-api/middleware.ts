/**
 * The Workload API's per-call checks, as small named steps run in this order (SPIRE's
 * `endpoints/middleware.go` + `peertracker.go`):
 *   1. requireSecurityHeader  — `/SpiffeWorkloadAPI/*` only; InvalidArgument without it
 *   2. (the RPC's own argument checks, e.g. "audience must be specified")
 *   3. identifyPeer           — the connection's credentials; Unauthenticated if unattestable
 *   4. attestCaller           — selectors from the workload attestors, then the PID-reuse guard
 *   5. CallLog                — method, pid, final code and duration (never tokens or keys);
 *                               refusals at most once per caller and code per 10 s
 * They are composed by rpc.ts around every handler, which also counts each finished call by
 * method and code (metrics.ts).
 */
import type { Metadata } from '@grpc/grpc-js';
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import { secondsSince } from '../../common/recorders.ts';
import type { Logger } from '../../common/logger.ts';
import { systemClock, type Clock } from '../../common/clock.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';
import type { Selector } from '../../common/selector.ts';
import type { WorkloadAttestor } from '../workload-attestation/workload-attestor.ts';
import type { PeerTracker, TrackedPeer } from './peer-tracker.ts';
import type { WorkloadActivity } from './workload-activity.ts';
import type { WorkloadApiMetrics } from './metrics.ts';

/** Method paths the security header applies to. */
export const WORKLOAD_API_PREFIX = '/SpiffeWorkloadAPI/';
/** The metadata key every Workload API call must carry, with exactly one value "true". */
export const SECURITY_HEADER = 'workload.spiffe.io';

/** Step 1: the security header (SPIFFE Workload Endpoint §6). */
export function requireSecurityHeader(path: string, metadata: Metadata): void {
  if (!path.startsWith(WORKLOAD_API_PREFIX)) return;
  const values = metadata.get(SECURITY_HEADER);
  if (values.length !== 1 || values[0] !== 'true') {
    throw new ApiError(Code.INVALID_ARGUMENT, 'security header missing from request');
  }
}

/** Step 3: the caller of the connection the call arrived on (keyed by `call.getPeer()`). */
export function identifyPeer(tracker: PeerTracker, call: { getPeer(): string }): TrackedPeer {
  return tracker.lookup(call.getPeer());
}

/** The PID of an identified peer (identifyPeer only returns attestable ones). */
export function peerPid(peer: TrackedPeer): number | undefined {
  return peer.credentials.kind === 'process' ? peer.credentials.pid : undefined;
}

/** What step 4 needs. */
export interface AttestDeps {
  readonly tracker: PeerTracker;
  readonly attestor: WorkloadAttestor;
  /** The `attestors` phase and each attestation's outcome; nothing recorded when absent. */
  readonly metrics?: WorkloadApiMetrics;
  /** Each caller's last attestation, for `debug workloads`; nothing recorded when absent. */
  readonly activity?: WorkloadActivity;
}

/**
 * Step 4: selectors for the caller, recorded as the `attestors` phase and as one whole
 * attestation by final status (the tracker records its own `liveness_check` phase).
 */
export async function attestCaller(deps: AttestDeps, peer: TrackedPeer, signal: AbortSignal): Promise<Selector[]> {
  const metrics = deps.metrics;
  if (metrics === undefined) return attestPeer(deps, peer, signal);
  const started = performance.now();
  try {
    const selectors = await attestPeer(deps, peer, signal);
    metrics.attestation.record(Code.OK, secondsSince(started));
    return selectors;
  } catch (err) {
    metrics.attestation.record(toApiError(err).code, secondsSince(started));
    throw err;
  }
}

/**
 * The liveness check runs once, after attesting: the PID we attested must still be the
 * caller's, not a reused one (a check before would only repeat it on the hot path; a caller
 * already gone makes the attestors fail and is caught by the same check). An attestation
 * failure is reported as Unauthenticated when the caller vanished meanwhile, since that is
 * the real cause.
 */
async function attestPeer(deps: AttestDeps, peer: TrackedPeer, signal: AbortSignal): Promise<Selector[]> {
  const pid = peerPid(peer);
  if (pid === undefined) throw new ApiError(Code.UNAUTHENTICATED, 'could not resolve caller information');
  const started = performance.now();
  let selectors: Selector[];
  try {
    selectors = await deps.attestor.attest(pid, signal);
  } catch (err) {
    deps.metrics?.attestorsSeconds.observe(secondsSince(started));
    deps.tracker.verifyAlive(peer);
    if (signal.aborted) throw new ApiError(Code.CANCELLED, 'workload api: call cancelled during attestation');
    const apiError = toApiError(err);
    if (apiError.code === Code.INTERNAL || apiError.code === Code.UNKNOWN) {
      throw new ApiError(Code.UNAVAILABLE, 'workload attestation failed');
    }
    throw apiError;
  }
  deps.metrics?.attestorsSeconds.observe(secondsSince(started));
  deps.tracker.verifyAlive(peer);
  deps.activity?.attested(pid, selectors, performance.now() - started);
  return selectors;
}

/** One finished call, as logged. */
export interface CallRecord {
  readonly method: string;
  readonly pid: number | undefined;
  readonly code: Code;
  readonly message: string;
  readonly durationMs: number;
  /** For a refused identity: the entry the caller missed most narrowly, worked out only if the line is written. */
  readonly nearestMiss?: () => string | undefined;
}

/** Codes that mean the server (not the client) has a problem. */
const SERVER_FAULTS = new Set<Code>([Code.INTERNAL, Code.UNKNOWN, Code.RESOURCE_EXHAUSTED, Code.DATA_LOSS]);

type CallLevel = 'error' | 'warn' | 'info' | 'debug';

/** The level a finished call is logged at: who is at fault decides. */
function levelOf(code: Code): CallLevel {
  if (SERVER_FAULTS.has(code)) return 'error';
  if (code === Code.UNAUTHENTICATED) return 'warn';
  // A workload without an entry is an everyday event (clients poll until registered): info, not warn.
  if (code === Code.PERMISSION_DENIED) return 'info';
  return 'debug';
}

/** The log message of a call at each level, for the API named `api` ("workload api", "admin api"). */
function callMessages(api: string): Readonly<Record<CallLevel, string>> {
  return { error: `${api} call failed`, warn: `${api} call denied`, info: `${api} call denied`, debug: `${api} call` };
}

const WORKLOAD_API_MESSAGES = callMessages('workload api');

/** Step 5: one structured line per call, at a level that matches who is at fault. */
export function logCall(logger: Logger, record: CallRecord, suppressed = 0, messages = WORKLOAD_API_MESSAGES): void {
  const level = levelOf(record.code);
  logger[level](
    {
      method: record.method,
      caller_pid: record.pid,
      code: Code[record.code],
      duration_ms: Math.round(record.durationMs * 1000) / 1000,
      ...(record.code === Code.OK || record.code === Code.CANCELLED ? {} : { error: record.message }),
      ...(suppressed > 0 ? { suppressed_since_last: suppressed } : {}),
      ...nearestMissField(record),
    },
    messages[level],
  );
}

function nearestMissField(record: CallRecord): { nearest_miss?: string } {
  const miss = record.nearestMiss?.();
  return miss === undefined ? {} : { nearest_miss: miss };
}

/** How often at most one caller's calls ending with one refusal code are logged. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Step 5 with a bound on what one caller can write to the log: a client polling every 20 ms
 * for an identity it has not got, or hammering past its limits, would otherwise add a line per
 * call (the agent's log is the node's disk and the operator's attention). Lines at info and
 * above are written at most once per caller PID and code per {@link REFUSAL_LOG_INTERVAL_MS},
 * the next one saying how many were left out; the metrics still count every call.
 */
export class CallLog {
  readonly #logger: Logger;
  readonly #rate: KeyedRateLimit;
  readonly #messages: Readonly<Record<CallLevel, string>>;

  /** `api` names the API in each line's message (default "workload api"). */
  constructor(logger: Logger, clock: Clock = systemClock, api = 'workload api') {
    this.#logger = logger;
    this.#rate = new KeyedRateLimit({ intervalMs: REFUSAL_LOG_INTERVAL_MS, clock });
    this.#messages = api === 'workload api' ? WORKLOAD_API_MESSAGES : callMessages(api);
  }

  record(record: CallRecord): void {
    // Debug lines are off in production and never held back.
    if (levelOf(record.code) === 'debug') {
      logCall(this.#logger, record, 0, this.#messages);
      return;
    }
    const decision = this.#rate.admit(`${record.pid ?? '-'}:${record.code}`);
    if (decision.admitted) logCall(this.#logger, record, decision.suppressed, this.#messages);
  }
}
