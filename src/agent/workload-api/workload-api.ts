/**
 * The Workload API server, public entry point of this folder: owns the Unix socket, captures
 * each connection's peer credentials at accept, and hands the connection to grpc-js
 * (SpiffeWorkloadAPI + grpc.health.v1.Health).
 *
 * accept → PeerTracker.track (SO_PEERCRED, pidfd, start time, per-caller connection limits;
 *          socket tagged with its key)
 *        → connection-gate.ts (bounded read of the client's start: well-formed HTTP/2, a first
 *          request within the deadline; raw socket unless grpc-java's socket-path :authority
 *          needs rewriting)
 *        → grpc-js connection injector (HTTP/2 with a raised RST_STREAM limit, bounded streams
 *          per connection and request size)
 *        → rpc.ts middleware → handlers → IdentitySource
 * The same socket serves Envoy's SecretDiscoveryService (../sds/), through the same middleware.
 */
import { Server } from '@grpc/grpc-js';
import { systemClock, type Clock } from '../../common/clock.ts';
import { ApiError, Code } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { HealthService } from '../../common/proto.ts';
import type { WorkloadAttestor } from '../workload-attestation/workload-attestor.ts';
import { DEFAULT_CALLER_LIMITS, type CallerLimits } from './caller-limits.ts';
import { CallLog } from './middleware.ts';
import { createHealthHandlers } from './handlers/health.ts';
import { createLimitedInjector, DEFAULT_STREAM_RESET_LIMIT, type StreamResetLimit } from './http2-reset-limit.ts';
import type { IdentitySource } from './identity-source.ts';
import { assertLibcAvailable } from './libc.ts';
import type { WorkloadApiMetrics } from './metrics.ts';
import { PeerTracker } from './peer-tracker.ts';
import { createWorkloadApiHandlers, workloadApiServiceDefinition } from './service.ts';
import { DEFAULT_SDS_CONFIG, type SdsConfig } from '../sds/sds-config.ts';
import { createSdsHandlers, sdsServiceDefinition } from '../sds/sds-service.ts';
import { closeSocketServer } from './server-close.ts';
import { watchSessionFailures } from './session-failures.ts';
import { listenOnSocket, prepareSocketPath } from './socket-file.ts';
import { StreamRegistry } from './stream-session.ts';
import { createGatedListener } from './gated-listener.ts';
import { boundPartialRequests } from './request-budget.ts';
import type { WorkloadActivity } from './workload-activity.ts';
import type { Selector } from '../../common/selector.ts';

/** Options of {@link startWorkloadApi}. */
export interface WorkloadApiOptions {
  /** Absolute path of the Unix socket (e.g. /run/spire/agent-sockets/spire-agent.sock). */
  socketPath: string;
  source: IdentitySource;
  attestor: WorkloadAttestor;
  logger: Logger;
  /** Time for JWT validation; defaults to the system clock. */
  clock?: Clock;
  /** Where /proc is (tests); defaults to `/proc`. */
  procRoot?: string;
  /** SPIRE's allow_unauthenticated_verifiers (bundles for callers without an identity). Default false. */
  allowUnauthenticatedVerifiers?: boolean;
  /** SPIRE's allowed_foreign_jwt_claims. Default none. */
  allowedForeignJwtClaims?: readonly string[];
  /** nghttp2's RST_STREAM limit per connection; see http2-reset-limit.ts. */
  streamResetLimit?: StreamResetLimit;
  /** Where connections, attestation phases and calls are recorded; nothing is recorded when absent. */
  metrics?: WorkloadApiMetrics;
  /** Per-caller connection, call and stream limits; defaults to {@link DEFAULT_CALLER_LIMITS}. */
  limits?: CallerLimits;
  /** How long a new connection may take to send its first request; see connection-gate.ts. */
  firstRequestDeadlineMs?: number;
  /** Where each connected process's activity is kept (for `debug workloads`); nothing is kept when absent. */
  activity?: WorkloadActivity;
  /** Names the entry a refused caller missed most narrowly, in the refusal's (rate-limited) log line. */
  nearestMiss?: (selectors: readonly Selector[]) => string | undefined;
  /** The `sds { … }` settings of the Envoy SDS service served on the same socket; SPIRE's defaults when absent. */
  sds?: SdsConfig;
}

/**
 * The largest request message accepted. Workload API requests are tiny (the largest is a
 * JWT-SVID to validate), but an Envoy SDS request carries the whole Envoy node: its metadata
 * (large under Istio) and the list of every extension in the build with its type URLs, tens of
 * KiB, sent again with every ACK. grpc-js would otherwise buffer up to 4 MiB per call for any
 * caller (grpc-js has no per-method limit).
 */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/** A running Workload API server. */
export interface WorkloadApiServer {
  readonly socketPath: string;
  /**
   * Stops: ends open streams with UNAVAILABLE (never OK), closes connections and the socket,
   * removes the socket file. Idempotent.
   */
  close(): Promise<void>;
  /** Open client connections. */
  connectionCount(): number;
  /** Open server streams. */
  streamCount(): number;
  /** Whether the socket is listening and the server is not closing. */
  serving(): boolean;
}

/** How long close() lets calls finish before cutting connections. */
const SHUTDOWN_GRACE_MS = 1_000;

/**
 * Starts the Workload API on a Unix socket: removes a stale socket file (refusing to touch
 * anything that is not a socket), listens, and makes the socket connectable by every user.
 */
export async function startWorkloadApi(opts: WorkloadApiOptions): Promise<WorkloadApiServer> {
  assertLibcAvailable();
  const logger = opts.logger;
  // Undefined when telemetry is off: then nothing is even timed.
  const metrics = opts.metrics;
  const limits = opts.limits ?? DEFAULT_CALLER_LIMITS;
  const activity = opts.activity;
  const tracker = new PeerTracker({ procRoot: opts.procRoot ?? '/proc', logger, metrics, limits, activity });
  const streams = new StreamRegistry();

  const grpcServer = new Server({
    // Channelz off: it tracks every call and session, which costs memory under stream churn.
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': limits.streamsPerConnection,
    'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
    // Unlimited is grpc-js's server default; stated because responses may pass 4 MiB (5,000
    // SVIDs are about 6 MB) and must never be refused for it, as in SPIRE (large-response.ts).
    'grpc.max_send_message_length': -1,
  });
  const clock = opts.clock ?? systemClock;
  // One call log and one set of limits for both services: a caller's SDS streams count with its Workload API calls.
  const rpcDeps = { tracker, callLog: new CallLog(logger, clock), attestor: opts.attestor, logger, streams, metrics, activity, nearestMiss: opts.nearestMiss };
  grpcServer.addService(
    workloadApiServiceDefinition,
    createWorkloadApiHandlers({
      ...rpcDeps,
      source: opts.source,
      clock,
      allowUnauthenticatedVerifiers: opts.allowUnauthenticatedVerifiers ?? false,
      allowedForeignJwtClaims: new Set(opts.allowedForeignJwtClaims ?? []),
    }),
  );
  grpcServer.addService(sdsServiceDefinition, createSdsHandlers({ ...rpcDeps, source: opts.source, clock, config: opts.sds ?? DEFAULT_SDS_CONFIG }));
  grpcServer.addService(HealthService, createHealthHandlers(opts.source));

  const resetLimit = opts.streamResetLimit ?? DEFAULT_STREAM_RESET_LIMIT;
  const { injector, limitApplied, http2Server } = createLimitedInjector(grpcServer, resetLimit);
  if (!limitApplied) {
    logger.error('grpc-js did not create its HTTP/2 server through http2.createServer: connections will be closed after ~1000 cancelled streams (grpc-node#2872)');
  }
  if (http2Server !== undefined) {
    watchSessionFailures(http2Server, { logger, clock, pidOf: (key) => tracker.pidOf(key) });
    // Half-sent requests are bounded per connection (see request-budget.ts).
    boundPartialRequests(http2Server, { logger, clock, pidOf: (key) => tracker.pidOf(key), label: 'workload' });
  }

  const listener = createGatedListener({
    tracker,
    inject: (connection) => injector.injectConnection(connection),
    http2Server,
    logger,
    label: 'workload',
    firstRequestDeadlineMs: opts.firstRequestDeadlineMs,
    onAccepted: metrics === undefined ? undefined : () => metrics.connectionsAccepted.inc(),
    onGateRefused: metrics === undefined ? undefined : (reason) => metrics.gateRefused(reason).inc(),
  });
  const { netServer, sockets } = listener;

  await prepareSocketPath(opts.socketPath);
  const fileId = await listenOnSocket(netServer, opts.socketPath);
  logger.debug({ socket_path: opts.socketPath, stream_reset_burst: resetLimit.burst, stream_reset_rate: resetLimit.ratePerSecond }, 'workload api listening');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      listener.stopAccepting();
      const shutdownError = new ApiError(Code.UNAVAILABLE, 'workload api: the agent is shutting down');
      await closeSocketServer({ netServer, grpcServer, streams, sockets, socketPath: opts.socketPath, fileId, shutdownError, graceMs: SHUTDOWN_GRACE_MS });
      logger.info({ socket_path: opts.socketPath }, 'workload api stopped');
    })();
    return closed;
  };

  return {
    socketPath: opts.socketPath,
    close,
    connectionCount: () => sockets.size,
    streamCount: () => streams.size,
    serving: () => listener.accepting && netServer.listening,
  };
}

// The types callers of startWorkloadApi need, re-exported so they import one module.
export type { IdentitySource } from './identity-source.ts';
export type { BundleSnapshot, JwtIdentity, WorkloadState, X509Identity } from '../manager/workload-state.ts';
export { DEFAULT_STREAM_RESET_LIMIT, type StreamResetLimit } from './http2-reset-limit.ts';
export { DEFAULT_CALLER_LIMITS, type CallerLimits } from './caller-limits.ts';
export { DEFAULT_SDS_CONFIG, type SdsConfig } from '../sds/sds-config.ts';
