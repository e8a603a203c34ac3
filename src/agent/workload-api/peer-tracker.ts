/**
 * Per-connection caller credentials and the PID-reuse guard.
 *
 * Invariants:
 * - One entry per open connection, created synchronously at accept and removed (with its
 *   pidfd closed) when the socket closes; nothing else holds a pidfd.
 * - Handlers reach their entry through public grpc-js API only: the accepted socket's
 *   `remoteAddress` is overridden with an opaque key, which is what `call.getPeer()` returns
 *   for a Unix socket (it has no remote port). Without the override getPeer() says "unknown".
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { ApiError, Code } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { secondsSince, type ValueRecorder } from '../../common/recorders.ts';
import {
  capturePeerCredentials,
  readProcessFacts,
  releasePeerCredentials,
  type PeerCredentials,
  type ProcessPeer,
} from './peer-credentials.ts';
import { pidfdExited } from './libc.ts';

/** The caller of one connection, as handlers see it. */
export interface TrackedPeer {
  /** The opaque connection key (what `call.getPeer()` returns). */
  readonly key: string;
  readonly credentials: PeerCredentials;
}

/** Prefix of every Unauthenticated message about a vanished caller (SPIRE's wording). */
export const ORIGINAL_CALLER_PREFIX = 'could not verify existence of the original caller: ';

/** How long a revoked connection stays open so the Unauthenticated status reaches the client. */
const REVOKE_CLOSE_DELAY_MS = 50;

/**
 * Why the process that connected can no longer be vouched for, or undefined if it still can:
 * its pidfd must not have exited, its start time must be unchanged, and /proc/<pid> must still
 * belong to the same uid and gid.
 */
export function livenessFailure(peer: ProcessPeer, procRoot: string): string | undefined {
  if (peer.pidfd !== undefined) {
    const exited = pidfdExited(peer.pidfd);
    if (!exited.ok) return `caller exit suspected: polling its pidfd failed with errno ${exited.errno}`;
    if (exited.value) return 'caller exit detected via pidfd';
  }
  const facts = readProcessFacts(procRoot, peer.pid);
  if (!facts.ok) return `caller exit suspected: ${facts.error}`;
  const now = facts.value;
  if (now.startTime !== peer.startTime) {
    return `new process detected: process starttime ${now.startTime} does not match original caller ${peer.startTime}`;
  }
  if (now.uid !== peer.procUid) return `new process detected: process uid ${now.uid} does not match original caller ${peer.procUid}`;
  if (now.gid !== peer.procGid) return `new process detected: process gid ${now.gid} does not match original caller ${peer.procGid}`;
  return undefined;
}

interface Entry {
  readonly peer: TrackedPeer;
  readonly socket: Socket;
  revoked: string | undefined;
}

/** Options of {@link PeerTracker}. */
export interface PeerTrackerOptions {
  procRoot: string;
  logger: Logger;
  /** Seconds per credential capture at accept (phase `peer_credentials`) and per liveness check (phase `liveness_check`). */
  metrics?: { readonly peerCredentialsSeconds: ValueRecorder; readonly livenessCheckSeconds: ValueRecorder };
}

/** Owns the credentials of every open connection. */
export class PeerTracker {
  readonly #procRoot: string;
  readonly #logger: Logger;
  readonly #metrics: PeerTrackerOptions['metrics'];
  readonly #entries = new Map<string, Entry>();
  readonly #keyPrefix = `workload-peer:${randomBytes(6).toString('hex')}:`;
  #counter = 0;

  constructor(opts: PeerTrackerOptions) {
    this.#procRoot = opts.procRoot;
    this.#logger = opts.logger;
    this.#metrics = opts.metrics;
  }

  /** Open connections being tracked. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Captures the credentials of a freshly accepted socket and tags it with its key. Must be
   * called synchronously in the connection callback. Returns false (and destroys the socket)
   * when the socket is unusable.
   */
  track(socket: Socket): boolean {
    let credentials: PeerCredentials;
    const started = this.#metrics === undefined ? 0 : performance.now();
    try {
      credentials = capturePeerCredentials(socket, this.#procRoot);
      this.#metrics?.peerCredentialsSeconds.observe(secondsSince(started));
    } catch (err) {
      this.#logger.error({ error: (err as Error).message }, 'dropping workload connection: peer credentials unavailable');
      socket.destroy();
      return false;
    }
    this.#counter += 1;
    const key = `${this.#keyPrefix}${this.#counter}`;
    const entry: Entry = { peer: { key, credentials }, socket, revoked: undefined };
    this.#entries.set(key, entry);
    // Public grpc-js API (getPeer) reads socket.remoteAddress, which Unix sockets leave undefined.
    Object.defineProperty(socket, 'remoteAddress', { value: key, configurable: true, enumerable: false });
    socket.once('close', () => this.#forget(key));
    if (credentials.kind === 'unattestable') {
      this.#logger.warn({ reason: credentials.reason }, 'workload connection cannot be attested');
    }
    return true;
  }

  /** The caller of a call, by the key `call.getPeer()` returned; Unauthenticated if unknown. */
  lookup(peerKey: string): TrackedPeer {
    const entry = this.#entries.get(peerKey);
    if (entry === undefined) throw new ApiError(Code.UNAUTHENTICATED, `${ORIGINAL_CALLER_PREFIX}connection is not tracked`);
    if (entry.revoked !== undefined) throw new ApiError(Code.UNAUTHENTICATED, entry.revoked);
    if (entry.peer.credentials.kind === 'unattestable') throw new ApiError(Code.UNAUTHENTICATED, entry.peer.credentials.reason);
    return entry.peer;
  }

  /** The PID behind a connection key, for logs; never throws. */
  pidOf(peerKey: string): number | undefined {
    const credentials = this.#entries.get(peerKey)?.peer.credentials;
    return credentials?.kind === 'process' ? credentials.pid : undefined;
  }

  /**
   * Throws Unauthenticated, and closes the connection shortly after, if the caller is no
   * longer the process that connected.
   */
  verifyAlive(peer: TrackedPeer): void {
    const credentials = peer.credentials;
    if (credentials.kind !== 'process') throw new ApiError(Code.UNAUTHENTICATED, credentials.reason);
    // Once the socket has closed its pidfd is closed too (and the number may be reused):
    // only a still-tracked connection may be checked through it.
    const entry = this.#entries.get(peer.key);
    if (entry === undefined) throw new ApiError(Code.UNAUTHENTICATED, `${ORIGINAL_CALLER_PREFIX}connection is closed`);
    if (entry.revoked !== undefined) throw new ApiError(Code.UNAUTHENTICATED, entry.revoked);
    const started = this.#metrics === undefined ? 0 : performance.now();
    const failure = livenessFailure(credentials, this.#procRoot);
    this.#metrics?.livenessCheckSeconds.observe(secondsSince(started));
    if (failure === undefined) return;
    const message = `${ORIGINAL_CALLER_PREFIX}${failure}`;
    this.#revoke(peer.key, message, credentials.pid);
    throw new ApiError(Code.UNAUTHENTICATED, message);
  }

  #revoke(key: string, message: string, pid: number): void {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.revoked !== undefined) return;
    entry.revoked = message;
    this.#logger.warn({ caller_pid: pid, reason: message }, 'closing workload connection: original caller is gone');
    // Why a delay: the status of the failing call is written asynchronously by the HTTP/2
    // session; destroying the socket at once could swallow it.
    setTimeout(() => entry.socket.destroy(), REVOKE_CLOSE_DELAY_MS).unref();
  }

  #forget(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    releasePeerCredentials(entry.peer.credentials);
  }
}
