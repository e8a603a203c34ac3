/**
 * The Envoy Secret Discovery Service (envoy.service.secret.v3) on the Workload API socket,
 * with the same peer credentials, attestation, per-caller limits, metrics and call log as the
 * Workload API, but without the `workload.spiffe.io` header (Envoy does not send it; SPIRE
 * requires it only of /SpiffeWorkloadAPI/ methods).
 *
 * - StreamSecrets: attest, subscribe, then run each request and each workload state through
 *   the stream's state machine (stream-state.ts), sending what it says.
 * - FetchSecrets: attest, take the workload's current state, answer once (no version, no nonce).
 * - DeltaSecrets: Unimplemented, as SPIRE.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { handleBidiStreamingCall, ServerDuplexStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { loadProtos } from '../../common/proto.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';
import type { StatusCounter } from '../../common/recorders.ts';
import type { DiscoveryRequest__Output } from '../../gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { DiscoveryResponse } from '../../gen/envoy/service/discovery/v3/DiscoveryResponse.ts';
import { encodeResponse, serializerOf, withPassthroughSerializers, type EncodedMessage } from '../workload-api/encode.ts';
import type { IdentitySource } from '../workload-api/identity-source.ts';
import { NOOP_WORKLOAD_API_METRICS } from '../workload-api/metrics.ts';
import { bidiStreamRpc, unaryRpc, type Caller, type RpcDeps, type UnarySpec } from '../workload-api/rpc.ts';
import { currentState } from '../workload-api/handlers/validate-jwt-svid.ts';
import { StreamSession, subscribeSession, type StreamCall } from '../workload-api/stream-session.ts';
import type { SdsConfig } from './sds-config.ts';
import { buildSecrets } from './secrets.ts';
import { SecretStreamState, type StreamNote, type StreamStep } from './stream-state.ts';

const sdsService = loadProtos().envoy.service.secret.v3.SecretDiscoveryService.service;

/** The SecretDiscoveryService definition with pass-through response serializers. */
export const sdsServiceDefinition: ServiceDefinition = withPassthroughSerializers(sdsService);

const serializeResponse = serializerOf<DiscoveryResponse>(sdsService.StreamSecrets);

/** How often at most one caller's NACKs, rollbacks or stale nonces are logged (each kind apart). */
export const SDS_NOTE_LOG_INTERVAL_MS = 10_000;
/** Longest client error detail written to the log. */
const MAX_LOGGED_DETAIL = 1_024;

/** What the SDS handlers need beyond the middleware. */
export interface SdsHandlerOptions extends RpcDeps {
  readonly source: IdentitySource;
  readonly config: SdsConfig;
  readonly clock: Clock;
  /** Nonce generator (tests); default: 4 random bytes in hex, as SPIRE. */
  readonly nonce?: () => string;
}

function randomNonce(): string {
  return randomBytes(4).toString('hex');
}

/** Builds the handlers of every SecretDiscoveryService method. */
export function createSdsHandlers(opts: SdsHandlerOptions): UntypedServiceImplementation {
  const notes = new KeyedRateLimit({ intervalMs: SDS_NOTE_LOG_INTERVAL_MS, clock: opts.clock });
  return {
    StreamSecrets: bidiStreamRpc<DiscoveryRequest__Output>(opts, 'StreamSecrets', (session, caller, call) => runStream(opts, notes, session, caller, call)),
    FetchSecrets: unaryRpc(opts, 'FetchSecrets', fetchSecrets(opts)),
    DeltaSecrets: deltaSecrets(opts),
  };
}

/** Logs what the state machine noticed, at most once per caller and kind per interval. */
function logNotes(opts: SdsHandlerOptions, rate: KeyedRateLimit, pid: number, notes: readonly StreamNote[]): void {
  for (const note of notes) {
    const decision = rate.admit(`${pid}:${note.kind}`);
    if (!decision.admitted) continue;
    const base = { method: 'StreamSecrets', caller_pid: pid, ...(decision.suppressed > 0 ? { suppressed_since_last: decision.suppressed } : {}) };
    switch (note.kind) {
      case 'nack':
        opts.logger.warn({ ...base, resource_names: note.resourceNames, error: note.error.slice(0, MAX_LOGGED_DETAIL) }, 'sds client reported errors applying secrets');
        break;
      case 'rolled-back':
        opts.logger.warn({ ...base, version_info: note.version, expected: note.expected }, 'sds client rejected the expected version and rolled back');
        break;
      case 'stale-nonce':
        opts.logger.warn({ ...base, nonce: note.nonce, expected: note.expected }, 'sds request with an unexpected nonce ignored');
        break;
    }
  }
}

/** The StreamSecrets body once the caller is attested. */
function runStream(opts: SdsHandlerOptions, rate: KeyedRateLimit, session: StreamSession, caller: Caller, call: ServerDuplexStream<DiscoveryRequest__Output, EncodedMessage>): void {
  const machine = new SecretStreamState({ config: opts.config, nonce: opts.nonce ?? randomNonce });
  const apply = (step: StreamStep): void => {
    logNotes(opts, rate, caller.pid, step.notes);
    if (step.kind === 'fail') {
      session.fail(step.error);
    } else if (step.kind === 'send') {
      let bytes: EncodedMessage;
      try {
        bytes = encodeResponse(serializeResponse, { ...step.response, resources: [...step.response.resources] });
      } catch (err) {
        session.fail(err);
        return;
      }
      opts.logger.debug(
        { method: 'StreamSecrets', caller_pid: caller.pid, version_info: step.response.version_info, nonce: step.response.nonce, resource_names: step.names },
        'sds response sent',
      );
      session.send(bytes);
    }
  };
  subscribeSession(opts.source, session, caller.selectors, (state) => apply(machine.update(state)));
  if (session.ended) return;
  // Requests queue in the call's readable buffer until now (backpressure to the client).
  call.on('data', (request: DiscoveryRequest__Output) => {
    if (!session.ended) apply(machine.request(request));
  });
  call.on('end', () => session.complete());
}

/** A session whose end is counted and logged as a call of `method`. */
function recordedSession(opts: SdsHandlerOptions, method: string, calls: StatusCounter, call: StreamCall): StreamSession {
  const started = performance.now();
  const pid = opts.tracker.pidOf(call.getPeer());
  return new StreamSession(call, opts.streams, (end) => {
    calls.inc(end.code);
    opts.callLog.record({ method, pid, code: end.code, message: end.message, durationMs: performance.now() - started });
  });
}

function fetchSecrets(opts: SdsHandlerOptions): UnarySpec<DiscoveryRequest__Output> {
  return {
    async handle(request, caller, signal) {
      const state = await currentState(opts.source, caller.selectors, signal);
      const built = buildSecrets(state, { resourceNames: request.resource_names, node: request.node }, opts.config);
      if (!built.ok) throw built.error;
      opts.logger.debug({ method: 'FetchSecrets', caller_pid: caller.pid, resource_names: built.secrets.map((s) => s.name) }, 'sds response sent');
      return encodeResponse(serializeResponse, { version_info: '', resources: built.secrets.map((s) => s.resource), type_url: request.type_url, nonce: '' });
    },
  };
}

/** DeltaSecrets: Unimplemented, as SPIRE (no attestation: nothing is served). */
function deltaSecrets(opts: SdsHandlerOptions): handleBidiStreamingCall<unknown, EncodedMessage> {
  const method = 'DeltaSecrets';
  const calls = (opts.metrics ?? NOOP_WORKLOAD_API_METRICS).rpc(method);
  return (call) => {
    recordedSession(opts, method, calls, call).fail(new ApiError(Code.UNIMPLEMENTED, 'Method is not implemented'));
  };
}
