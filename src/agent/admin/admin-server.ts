/**
 * The agent's admin API server (`admin_socket_path`): a gRPC server on its own Unix socket on
 * which admin services are registered (the Delegated Identity API and Debug today). It has the
 * Workload API's defences, not a weaker side door:
 *
 * accept → PeerTracker.track (SO_PEERCRED/pidfd at accept, per-caller connection limits)
 *        → connection-gate.ts (a well-formed HTTP/2 start and a first request within the deadline)
 *        → grpc-js injector (raised RST_STREAM limit, bounded streams per connection and request size)
 *        → admin-rpc.ts (identify, per-caller call limit, log) → the service's handlers
 *
 * The socket is 0770 (SPIRE's mode): only root and the agent's group may connect; the
 * Delegated Identity API then attests and authorizes each caller by its SPIFFE ID.
 */
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { systemClock, type Clock } from '../../common/clock.ts';
import { ApiError, Code } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { claimSocketPath } from '../../common/unix-socket-file.ts';
import { DEFAULT_CALLER_LIMITS, type CallerLimits } from '../workload-api/caller-limits.ts';
import { createLimitedInjector, DEFAULT_STREAM_RESET_LIMIT } from '../workload-api/http2-reset-limit.ts';
import { assertLibcAvailable } from '../workload-api/libc.ts';
import { CallLog } from '../workload-api/middleware.ts';
import { PeerTracker } from '../workload-api/peer-tracker.ts';
import { closeSocketServer } from '../workload-api/server-close.ts';
import { watchSessionFailures } from '../workload-api/session-failures.ts';
import { listenOnSocket } from '../workload-api/socket-file.ts';
import { StreamRegistry } from '../workload-api/stream-session.ts';
import { createGatedListener } from '../workload-api/gated-listener.ts';
import { boundPartialRequests } from '../workload-api/request-budget.ts';
import type { AdminApiMetrics, AdminRpcDeps } from './admin-rpc.ts';

/** The admin socket's mode, as SPIRE's: owner and group only. */
export const ADMIN_SOCKET_MODE = 0o770;

/**
 * The largest request accepted: admin requests are small (the largest names a workload by
 * its selectors); without a bound grpc-js would buffer up to 4 MiB per call.
 */
export const MAX_ADMIN_REQUEST_BYTES = 64 * 1024;

/** How long close() lets calls finish before cutting connections. */
const SHUTDOWN_GRACE_MS = 1_000;

/** One service on the admin socket: its definition and its handlers. */
export interface AdminServiceRegistration {
  readonly definition: ServiceDefinition;
  readonly handlers: UntypedServiceImplementation;
}

/** Builds a service's handlers over the server's per-call steps (see admin-rpc.ts). */
export type AdminService = (deps: AdminRpcDeps) => AdminServiceRegistration;

/** Options of {@link startAdminApi}. */
export interface AdminApiOptions {
  /** Absolute path of the admin socket. */
  readonly socketPath: string;
  readonly services: readonly AdminService[];
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Where /proc is (tests); defaults to `/proc`. */
  readonly procRoot?: string;
  /** Per-caller connection, call and stream limits (the Workload API's); defaults to {@link DEFAULT_CALLER_LIMITS}. */
  readonly limits?: CallerLimits;
  /** How long a new connection may take to send its first request; see connection-gate.ts. */
  readonly firstRequestDeadlineMs?: number;
  /** Finished calls by method and status; nothing is recorded when absent. */
  readonly metrics?: AdminApiMetrics;
}

/** A running admin API server. */
export interface AdminApiServer {
  readonly socketPath: string;
  /** Ends open streams with UNAVAILABLE, closes connections, removes the socket file. Idempotent. */
  close(): Promise<void>;
  connectionCount(): number;
  streamCount(): number;
}

/**
 * The admin socket's per-caller limits from the Workload API's: the same, except that one
 * connection may carry every call its caller may hold. A delegate holds a stream per workload
 * it serves (a node's pods) on one connection, where a workload needs a handful; past
 * `streams_per_connection` its next stream would wait, silently, for a free slot.
 */
export function adminCallerLimits(workload: CallerLimits): CallerLimits {
  return { ...workload, streamsPerConnection: Math.max(workload.streamsPerConnection, workload.callsPerCaller) };
}

/**
 * Checks the admin socket path (creating its directory, 0755, as SPIRE): free or a stale
 * socket. Throws a PathError if another process serves there or another kind of file is there.
 */
export async function prepareAdminSocketPath(path: string): Promise<void> {
  await claimSocketPath(path, { role: 'agent', dirMode: 0o755 });
}

/** Starts the admin API on its Unix socket with the given services. */
export async function startAdminApi(opts: AdminApiOptions): Promise<AdminApiServer> {
  assertLibcAvailable();
  const logger = opts.logger;
  const clock = opts.clock ?? systemClock;
  const limits = opts.limits ?? DEFAULT_CALLER_LIMITS;
  const tracker = new PeerTracker({ procRoot: opts.procRoot ?? '/proc', logger, limits });
  const streams = new StreamRegistry();
  const deps: AdminRpcDeps = { tracker, logger, callLog: new CallLog(logger, clock, 'admin api'), streams, metrics: opts.metrics };

  const grpcServer = new Server({
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': limits.streamsPerConnection,
    'grpc.max_receive_message_length': MAX_ADMIN_REQUEST_BYTES,
    'grpc.max_send_message_length': -1,
  });
  for (const service of opts.services) {
    const { definition, handlers } = service(deps);
    grpcServer.addService(definition, handlers);
  }
  const { injector, http2Server } = createLimitedInjector(grpcServer, DEFAULT_STREAM_RESET_LIMIT);
  if (http2Server !== undefined) {
    watchSessionFailures(http2Server, { logger, clock, pidOf: (key) => tracker.pidOf(key) });
    // A delegate may hold 1,000 streams on one connection: half-sent requests are bounded per connection.
    boundPartialRequests(http2Server, { logger, clock, pidOf: (key) => tracker.pidOf(key), label: 'admin' });
  }

  const listener = createGatedListener({
    tracker,
    inject: (connection) => injector.injectConnection(connection),
    http2Server,
    logger,
    label: 'admin',
    firstRequestDeadlineMs: opts.firstRequestDeadlineMs,
  });
  const { netServer, sockets } = listener;

  await prepareAdminSocketPath(opts.socketPath);
  const fileId = await listenOnSocket(netServer, opts.socketPath, ADMIN_SOCKET_MODE);

  let closed: Promise<void> | undefined;
  return {
    socketPath: opts.socketPath,
    close() {
      closed ??= (async () => {
        listener.stopAccepting();
        const shutdownError = new ApiError(Code.UNAVAILABLE, 'admin api: the agent is shutting down');
        await closeSocketServer({ netServer, grpcServer, streams, sockets, socketPath: opts.socketPath, fileId, shutdownError, graceMs: SHUTDOWN_GRACE_MS });
        logger.info({ admin_socket_path: opts.socketPath }, 'admin api stopped');
      })();
      return closed;
    },
    connectionCount: () => sockets.size,
    streamCount: () => streams.size,
  };
}
