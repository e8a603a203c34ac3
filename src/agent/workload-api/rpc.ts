/**
 * Wraps Workload API handlers in the middleware chain (see middleware.ts) and is the one
 * place their errors become gRPC statuses (toGrpcStatus). Handlers receive an attested
 * {@link Caller} and return or send already-encoded responses.
 *
 * Why a wrapper rather than grpc-js server interceptors: the steps are async and produce
 * typed per-call data (the attested caller, an AbortSignal tied to cancellation) that
 * interceptors could only hand to handlers through metadata.
 */
import type { handleBidiStreamingCall, handleServerStreamingCall, handleUnaryCall, Metadata, sendUnaryData, ServerDuplexStream } from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import type { Logger } from '../../common/logger.ts';
import type { StatusCounter } from '../../common/recorders.ts';
import type { Selector } from '../../common/selector.ts';
import type { EncodedMessage } from './encode.ts';
import { attestCaller, identifyPeer, peerPid, requireSecurityHeader, type AttestDeps, type CallLog } from './middleware.ts';
import { NOOP_WORKLOAD_API_METRICS } from './metrics.ts';
import type { TrackedPeer } from './peer-tracker.ts';
import { StreamSession, type StreamCall, type StreamRegistry } from './stream-session.ts';
import { NO_IDENTITY_ISSUED } from './x509-svid-response.ts';

/** An attested caller. */
export interface Caller {
  readonly peer: TrackedPeer;
  readonly pid: number;
  readonly selectors: readonly Selector[];
}

/** What the wrappers need. */
export interface RpcDeps extends AttestDeps {
  /**
   * Names the entry a caller with these selectors misses most narrowly (for the log line of a
   * "no identity issued" refusal; see `debug explain`); absent: not named.
   */
  readonly nearestMiss?: (selectors: readonly Selector[]) => string | undefined;
  readonly logger: Logger;
  /** Where each finished call is logged (rate-limited per caller for refusals). */
  readonly callLog: CallLog;
  /** Open streams (for shutdown and counting). */
  readonly streams: StreamRegistry;
}

/** A unary RPC: argument checks (run before attestation, as SPIRE does), then the work. */
export interface UnarySpec<Req> {
  readonly validate?: (request: Req) => void;
  readonly handle: (request: Req, caller: Caller, signal: AbortSignal) => Promise<EncodedMessage>;
}

/** The parts of a grpc-js server call the middleware reads. */
interface AdmissionCall {
  getPath(): string;
  getPeer(): string;
  readonly metadata: Metadata;
}

/**
 * Runs the middleware chain for a call and returns the attested caller. The call counts
 * against its caller's limit from identification on: `onRelease` receives the release to run
 * when the call ends, whatever way it ends.
 */
async function admit(
  deps: RpcDeps,
  call: AdmissionCall,
  validate: (() => void) | undefined,
  signal: AbortSignal,
  onRelease: (release: () => void) => void,
): Promise<Caller> {
  requireSecurityHeader(call.getPath(), call.metadata);
  validate?.();
  const peer = identifyPeer(deps.tracker, call);
  onRelease(deps.tracker.startCall(peer));
  const selectors = await attestCaller(deps, peer, signal);
  return { peer, pid: peerPid(peer) ?? 0, selectors };
}

/** The PID behind a call's connection, for logs (undefined when unknown). */
function pidForLog(deps: RpcDeps, call: { getPeer(): string }): number | undefined {
  return deps.tracker.pidOf(call.getPeer());
}

/** Adapts a unary RPC. */
export function unaryRpc<Req>(deps: RpcDeps, method: string, spec: UnarySpec<Req>): handleUnaryCall<Req, EncodedMessage> {
  const calls = (deps.metrics ?? NOOP_WORKLOAD_API_METRICS).rpc(method);
  return (call, callback) => {
    const started = performance.now();
    const pid = pidForLog(deps, call);
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    const validate = spec.validate === undefined ? undefined : () => spec.validate?.(call.request);
    let release = (): void => {};
    let selectors: readonly Selector[] | undefined;
    const work = admit(deps, call, validate, abort.signal, (r) => (release = r))
      .then(async (caller) => {
        selectors = caller.selectors;
        const bytes = await spec.handle(call.request, caller, abort.signal);
        deps.activity?.sent(caller.pid, bytes.length);
        return bytes;
      })
      .finally(() => release());
    answerUnary(work, callback, { method, pid, started, calls, callLog: deps.callLog, nearestMiss: refusalMiss(deps, () => selectors) });
  };
}

/** The nearest-miss namer of a call's log line, once the caller's selectors are known. */
function refusalMiss(deps: RpcDeps, selectors: () => readonly Selector[] | undefined): (() => string | undefined) | undefined {
  const { nearestMiss } = deps;
  if (nearestMiss === undefined) return undefined;
  return () => {
    const known = selectors();
    return known === undefined ? undefined : nearestMiss(known);
  };
}

/** Where a finished unary call is counted and logged. */
export interface UnaryRecord {
  readonly method: string;
  readonly pid: number | undefined;
  /** performance.now() at the call's start. */
  readonly started: number;
  readonly calls: { inc(code: Code): void };
  readonly callLog: CallLog;
  /** Names the nearest miss in the line of a "no identity issued" refusal. */
  readonly nearestMiss?: (() => string | undefined) | undefined;
}

/**
 * Answers a unary call with the work's response, or with its error as a gRPC status (the one
 * place a unary handler's errors become statuses, for the Workload API and the admin API),
 * then counts and logs the call.
 */
export function answerUnary(work: Promise<EncodedMessage>, callback: sendUnaryData<EncodedMessage>, record: UnaryRecord): void {
  const { method, pid, started, calls, callLog, nearestMiss } = record;
  work.then(
    (bytes) => {
      callback(null, bytes);
      calls.inc(Code.OK);
      callLog.record({ method, pid, code: Code.OK, message: 'OK', durationMs: performance.now() - started });
    },
    (err: unknown) => {
      const apiError = toApiError(err);
      callback(toGrpcStatus(apiError));
      calls.inc(apiError.code);
      callLog.record({ method, pid, code: apiError.code, message: apiError.message, durationMs: performance.now() - started, ...missFor(apiError, nearestMiss) });
    },
  );
}

/** The record's nearest-miss namer, for a "no identity issued" refusal only. */
function missFor(err: { code: Code; message: string }, nearestMiss: (() => string | undefined) | undefined): { nearestMiss?: () => string | undefined } {
  return nearestMiss !== undefined && err.code === Code.PERMISSION_DENIED && err.message === NO_IDENTITY_ISSUED ? { nearestMiss } : {};
}

/** Adapts a server-streaming RPC: `start` runs once the caller is attested. */
export function streamRpc<Req>(
  deps: RpcDeps,
  method: string,
  start: (session: StreamSession, caller: Caller, request: Req) => void,
): handleServerStreamingCall<Req, EncodedMessage> {
  const calls = (deps.metrics ?? NOOP_WORKLOAD_API_METRICS).rpc(method);
  return (call) => serveStream(deps, method, calls, call, (session, caller) => start(session, caller, call.request));
}

/** Adapts a bidirectional-streaming RPC (SDS): `start` runs once the caller is attested, and reads the call's requests. */
export function bidiStreamRpc<Req>(
  deps: RpcDeps,
  method: string,
  start: (session: StreamSession, caller: Caller, call: ServerDuplexStream<Req, EncodedMessage>) => void,
): handleBidiStreamingCall<Req, EncodedMessage> {
  const calls = (deps.metrics ?? NOOP_WORKLOAD_API_METRICS).rpc(method);
  return (call) => serveStream(deps, method, calls, call, (session, caller) => start(session, caller, call));
}

/** One stream call: its end counted and logged as a call of `method`; `start` once the caller is attested. */
function serveStream(deps: RpcDeps, method: string, calls: StatusCounter, call: StreamCall, start: (session: StreamSession, caller: Caller) => void): void {
  const started = performance.now();
  const pid = pidForLog(deps, call);
  let selectors: readonly Selector[] | undefined;
  const nearestMiss = refusalMiss(deps, () => selectors);
  const session = new StreamSession(call, deps.streams, (end) => {
    calls.inc(end.code);
    deps.callLog.record({ method, pid, code: end.code, message: end.message, durationMs: performance.now() - started, ...missFor(end, nearestMiss) });
  });
  if (session.ended) return;
  admit(deps, call, undefined, session.signal, (release) => session.onEnd(release))
    .then((caller) => {
      selectors = caller.selectors;
      if (session.ended) return;
      session.observe(deps.activity, caller.pid);
      start(session, caller);
    })
    .catch((err: unknown) => session.fail(err));
}

/** A server-streaming RPC that only checks the header and answers Unimplemented. */
export function unimplementedStream<Req>(deps: RpcDeps, method: string, message: string): handleServerStreamingCall<Req, EncodedMessage> {
  const calls = (deps.metrics ?? NOOP_WORKLOAD_API_METRICS).rpc(method);
  return (call) => {
    const started = performance.now();
    const session = new StreamSession(call, deps.streams, (end) => {
      calls.inc(end.code);
      deps.callLog.record({ method, pid: pidForLog(deps, call), code: end.code, message: end.message, durationMs: performance.now() - started });
    });
    try {
      requireSecurityHeader(call.getPath(), call.metadata);
      session.fail(new ApiError(Code.UNIMPLEMENTED, message));
    } catch (err) {
      session.fail(err);
    }
  };
}
