/**
 * The accept path shared by the Workload API and admin sockets:
 *
 * accept → PeerTracker.track (peer credentials read synchronously, while the fd is certainly
 *          this socket's; per-caller connection limits) → connection-gate.ts → grpc-js
 *
 * Keeps the set of open sockets for shutdown (closeSocketServer) and stops accepting on request.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Http2Server } from 'node:http2';
import type { Logger } from '../../common/logger.ts';
import { gateConnection, type GateRefusal } from './connection-gate.ts';
import type { PeerTracker } from './peer-tracker.ts';
import { isSessionFailure } from './session-failures.ts';

/** Options of {@link createGatedListener}. */
export interface GatedListenerOptions {
  readonly tracker: PeerTracker;
  /** Hands an admitted connection to grpc-js. */
  readonly inject: (connection: Socket) => void;
  /** grpc-js's HTTP/2 server, when known: its session failures are logged by watchSessionFailures. */
  readonly http2Server: Http2Server | undefined;
  readonly logger: Logger;
  /** Names the socket in log lines, e.g. `workload` or `admin`. */
  readonly label: string;
  readonly firstRequestDeadlineMs?: number;
  /** Called for each connection tracked. */
  readonly onAccepted?: () => void;
  /** Called once per connection the gate refuses. */
  readonly onGateRefused?: (reason: GateRefusal) => void;
}

export interface GatedListener {
  readonly netServer: Server;
  /** The open connections. */
  readonly sockets: Set<Socket>;
  /** From now on new connections are closed at once. */
  stopAccepting(): void;
  readonly accepting: boolean;
}

/** Creates the listener (not yet listening: see socket-file.ts listenOnSocket). */
export function createGatedListener(opts: GatedListenerOptions): GatedListener {
  const { tracker, logger, http2Server } = opts;
  const sockets = new Set<Socket>();
  let accepting = true;
  const netServer = createServer((socket) => {
    if (!accepting) {
      socket.destroy();
      return;
    }
    if (!tracker.track(socket)) return;
    opts.onAccepted?.();
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', (err) => {
      // A session failure is logged by watchSessionFailures, which knows whether it cut calls.
      if (http2Server !== undefined && isSessionFailure(err)) return;
      logger.debug({ error: err.message }, `${opts.label} connection error`);
    });
    gateConnection(socket, opts.inject, { logger, firstRequestDeadlineMs: opts.firstRequestDeadlineMs, onRefused: opts.onGateRefused });
  });
  return {
    netServer,
    sockets,
    stopAccepting: () => {
      accepting = false;
    },
    get accepting() {
      return accepting;
    },
  };
}
