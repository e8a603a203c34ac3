/**
 * Closing a gRPC server that serves injected Unix-socket connections (the Workload API and
 * the admin API): let calls finish for a grace period, then cut what is left.
 */
import type { Server as NetServer, Socket } from 'node:net';
import type { Server } from '@grpc/grpc-js';
import type { ApiError } from '../../common/errors.ts';
import { removeSocketFile, type SocketFileId } from './socket-file.ts';
import type { StreamRegistry } from './stream-session.ts';

/** Shuts the server down, forcing it after `graceMs`. */
function tryShutdown(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Resolves once every socket has closed, destroying those still open after `graceMs`.
 *
 * Why wait rather than destroy at once: after a shutdown, the bytes still queued for a socket
 * are exactly the streams' final UNAVAILABLE statuses, and destroy() discards them (the client
 * then sees "Connection dropped"). Each HTTP/2 session ends its socket by itself once its
 * streams are done. grpc-js's tryShutdown cannot be relied on for this: with injected
 * connections it reports sessions closed as soon as they are asked to close (1.14).
 */
function socketsClosed(sockets: ReadonlySet<Socket>, graceMs: number): Promise<void> {
  const open = [...sockets].filter((s) => !s.destroyed);
  if (open.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let remaining = open.length;
    const timer = setTimeout(() => {
      for (const socket of open) socket.destroy();
    }, graceMs);
    for (const socket of open) {
      socket.once('close', () => {
        if (--remaining > 0) return;
        clearTimeout(timer);
        resolve();
      });
    }
  });
}

/** What {@link closeSocketServer} closes. */
export interface SocketServerParts {
  readonly netServer: NetServer;
  readonly grpcServer: Server;
  readonly streams: StreamRegistry;
  readonly sockets: ReadonlySet<Socket>;
  readonly socketPath: string;
  readonly fileId: SocketFileId;
  /** The status open streams end with (UNAVAILABLE, never OK). */
  readonly shutdownError: ApiError;
  readonly graceMs: number;
}

/**
 * Closes a gRPC server on a Unix socket: stops accepting, ends open streams with
 * `shutdownError`, lets calls finish for `graceMs`, waits for the connections to close, and
 * removes the socket file if it is still ours.
 */
export async function closeSocketServer(parts: SocketServerParts): Promise<void> {
  const listenerClosed = new Promise<void>((resolve) => parts.netServer.close(() => resolve()));
  parts.streams.closeAll(parts.shutdownError);
  await tryShutdown(parts.grpcServer, parts.graceMs);
  await socketsClosed(parts.sockets, parts.graceMs);
  await listenerClosed;
  await removeSocketFile(parts.socketPath, parts.fileId);
}
