/**
 * The admin API's per-call steps, and the one place their errors become gRPC statuses:
 *   1. identify the caller of the connection (peer credentials captured at accept; the same
 *      PeerTracker rules as the Workload API: Unauthenticated when unattestable);
 *   2. count the call against the caller's limit (ResourceExhausted past it);
 *   3. the handler (which attests and authorizes as its service requires: the Debug service
 *      does not, the Delegated Identity API does, as in SPIRE);
 *   4. one log line per finished call (CallLog: refusals rate-limited per caller).
 * No security header: SPIRE requires it on the Workload API only.
 */
import type { handleServerStreamingCall, handleUnaryCall } from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import { NOOP_STATUS_COUNTER, type StatusCounter } from '../../common/recorders.ts';
import type { Logger } from '../../common/logger.ts';
import type { EncodedMessage } from '../workload-api/encode.ts';
import { answerUnary } from '../workload-api/rpc.ts';
import { identifyPeer, peerPid, type CallLog } from '../workload-api/middleware.ts';
import type { PeerTracker, TrackedPeer } from '../workload-api/peer-tracker.ts';
import { StreamSession, type StreamRegistry } from '../workload-api/stream-session.ts';

/** What the admin API records (`admin_api_rpcs_total`; see ../telemetry/agent-metrics.ts). */
export interface AdminApiMetrics {
  /** Finished calls of one method, by final status. Called once per method, when handlers are built. */
  rpc(method: string): StatusCounter;
}

/** What every admin service's handlers get from the server. */
export interface AdminRpcDeps {
  readonly tracker: PeerTracker;
  readonly logger: Logger;
  readonly callLog: CallLog;
  readonly streams: StreamRegistry;
  /** Nothing is recorded when absent. */
  readonly metrics?: AdminApiMetrics;
}

/** One admitted call: its caller's connection, and a signal aborted when the call ends. */
export interface AdminCall {
  readonly peer: TrackedPeer;
  /** The caller's PID (0 when unknown). */
  readonly pid: number;
  readonly signal: AbortSignal;
}

function admit(deps: AdminRpcDeps, peerKey: string, signal: AbortSignal, onRelease: (release: () => void) => void): AdminCall {
  const peer = identifyPeer(deps.tracker, { getPeer: () => peerKey });
  onRelease(deps.tracker.startCall(peer));
  return { peer, pid: peerPid(peer) ?? 0, signal };
}

/** Adapts a unary admin RPC. */
export function adminUnary<Req>(
  deps: AdminRpcDeps,
  method: string,
  handle: (request: Req, call: AdminCall) => Promise<EncodedMessage>,
): handleUnaryCall<Req, EncodedMessage> {
  const calls = deps.metrics?.rpc(method) ?? NOOP_STATUS_COUNTER;
  return (call, callback) => {
    const started = performance.now();
    const pid = deps.tracker.pidOf(call.getPeer());
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    let release = (): void => {};
    const work = Promise.resolve()
      .then(() => handle(call.request, admit(deps, call.getPeer(), abort.signal, (r) => (release = r))))
      .finally(() => release());
    answerUnary(work, callback, { method, pid, started, calls, callLog: deps.callLog });
  };
}

/** Adapts a server-streaming admin RPC: `start` runs once the call is admitted, and may be async. */
export function adminStream<Req>(
  deps: AdminRpcDeps,
  method: string,
  start: (session: StreamSession, call: AdminCall, request: Req) => Promise<void> | void,
): handleServerStreamingCall<Req, EncodedMessage> {
  const calls = deps.metrics?.rpc(method) ?? NOOP_STATUS_COUNTER;
  return (call) => {
    const started = performance.now();
    const pid = deps.tracker.pidOf(call.getPeer());
    const session = new StreamSession(call, deps.streams, (end) => {
      calls.inc(end.code);
      deps.callLog.record({ method, pid, code: end.code, message: end.message, durationMs: performance.now() - started });
    });
    if (session.ended) return;
    Promise.resolve()
      .then(() => {
        const admitted = admit(deps, call.getPeer(), session.signal, (release) => session.onEnd(release));
        return start(session, admitted, call.request);
      })
      .catch((err: unknown) => session.fail(err));
  };
}
