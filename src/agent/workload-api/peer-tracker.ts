/**
 * Per-connection caller credentials, the PID-reuse guard and the per-caller limits.
 *
 * Invariants:
 * - One entry per open connection, created synchronously at accept and removed (with its
 *   pidfd closed and its count in the {@link CallerLedger} released) when the socket closes;
 *   nothing else holds a pidfd.
 * - A connection refused at accept (over a limit, or the agent short of a resource) is kept
 *   just long enough to answer its first call with the reason, then closed; at most as many
 *   such connections per caller as the caller may hold real ones, beyond that they are
 *   dropped at once.
 * - Handlers reach their entry through public grpc-js API only: the accepted socket's
 *   `remoteAddress` is overridden with an opaque key, which is what `call.getPeer()` returns
 *   for a Unix socket (it has no remote port). Without the override getPeer() says "unknown".
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { locateFromCgroup } from '../../attestors/workload/k8s/cgroup-locator.ts';
import { ApiError, Code } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { KeyedRateLimit } from '../../common/rate-limit.ts';
import { secondsSince, type EventCounter, type ValueRecorder } from '../../common/recorders.ts';
import { CallerLedger, DEFAULT_CALLER_LIMITS, type CallerKey, type CallerLimits, type LimitName } from './caller-limits.ts';
import {
  capturePeerCredentials,
  readProcessFacts,
  readProcessOwner,
  releasePeerCredentials,
  resourceCause,
  unavailableReason,
  type PeerCredentials,
  type ProcessPeer,
  type ResourceCause,
} from './peer-credentials.ts';
import { pidfdExited } from './libc.ts';
import type { WorkloadActivity } from './workload-activity.ts';

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
 * Why a liveness check failed: the caller is `gone` (or replaced), or the agent could not
 * check (`unavailable`, short of a resource: the caller may be fine).
 */
export type LivenessFailure =
  | { readonly kind: 'gone'; readonly reason: string }
  | { readonly kind: 'unavailable'; readonly reason: string; readonly cause: ResourceCause };

/**
 * Why the process that connected can no longer be vouched for, or undefined if it still can:
 * its pidfd must not have exited (without a pidfd: its start time must be unchanged), and
 * /proc/<pid> must still belong to the same uid and gid.
 */
export function livenessFailure(peer: ProcessPeer, procRoot: string): LivenessFailure | undefined {
  if (peer.pidfd !== undefined) {
    const exited = pidfdExited(peer.pidfd);
    if (!exited.ok) {
      const cause = resourceCause(exited.errno);
      return { kind: 'unavailable', cause, reason: unavailableReason("polling the caller's pidfd", cause, `errno ${exited.errno}`) };
    }
    if (exited.value) return gone('caller exit detected via pidfd');
  }
  // A live pidfd pins the process, so its start time cannot differ (peer-credentials.ts).
  const facts = peer.pidfd !== undefined ? readProcessOwner(procRoot, peer.pid) : readProcessFacts(procRoot, peer.pid);
  if (!facts.ok) {
    if (facts.cause === undefined) return gone(`caller exit suspected: ${facts.error}`);
    return { kind: 'unavailable', cause: facts.cause, reason: unavailableReason(`reading ${procRoot}/${peer.pid}`, facts.cause, facts.cause) };
  }
  const now = facts.value;
  if ('startTime' in now && now.startTime !== peer.startTime) {
    return gone(`new process detected: process starttime ${now.startTime} does not match original caller ${peer.startTime}`);
  }
  if (now.uid !== peer.procUid) return gone(`new process detected: process uid ${now.uid} does not match original caller ${peer.procUid}`);
  if (now.gid !== peer.procGid) return gone(`new process detected: process gid ${now.gid} does not match original caller ${peer.procGid}`);
  return undefined;
}

function gone(reason: string): LivenessFailure {
  return { kind: 'gone', reason };
}

/**
 * The pod (or container) a process belongs to, from its cgroup: `pod:<uid>`, `container:<id>`,
 * or undefined outside containers (and when the cgroup cannot be read).
 */
export function callerGroup(procRoot: string, pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  const located = locateFromCgroup(text);
  if (!located.ok) return undefined;
  if (located.value.podUid !== undefined) return `pod:${located.value.podUid}`;
  if (located.value.containerId !== undefined) return `container:${located.value.containerId}`;
  return undefined;
}

/** Why every call on a connection is refused, decided at accept. */
interface Refusal {
  readonly code: Code;
  readonly message: string;
}

interface Entry {
  readonly peer: TrackedPeer;
  readonly socket: Socket;
  /** Set for a process caller: what the ledger counted for it (released on close). */
  readonly caller: CallerKey | undefined;
  refusal: Refusal | undefined;
  revoked: string | undefined;
}

/** What the tracker records. */
export interface PeerTrackerMetrics {
  readonly peerCredentialsSeconds: ValueRecorder;
  readonly livenessCheckSeconds: ValueRecorder;
  /** Connections or calls refused by a per-caller limit. */
  limitRefused(limit: LimitName): EventCounter;
  /** Callers the agent could not identify for lack of a resource of its own. */
  peerCredentialErrors(cause: ResourceCause): EventCounter;
}

/** Options of {@link PeerTracker}. */
export interface PeerTrackerOptions {
  procRoot: string;
  logger: Logger;
  /** Per-caller limits; defaults to {@link DEFAULT_CALLER_LIMITS}. */
  limits?: CallerLimits;
  /** Seconds per credential capture at accept (phase `peer_credentials`) and per liveness check (phase `liveness_check`), refusals. */
  metrics?: PeerTrackerMetrics;
  /** Told of each process connection accepted and closed (for `debug workloads`). */
  activity?: WorkloadActivity;
}

/** How often at most a resource problem is logged (each occurrence is counted in the metric). */
const RESOURCE_LOG_INTERVAL_MS = 1_000;

/** Owns the credentials of every open connection. */
export class PeerTracker {
  readonly #procRoot: string;
  readonly #logger: Logger;
  readonly #metrics: PeerTrackerOptions['metrics'];
  readonly #limits: CallerLimits;
  readonly #ledger: CallerLedger;
  readonly #activity: WorkloadActivity | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #keyPrefix = `workload-peer:${randomBytes(6).toString('hex')}:`;
  #counter = 0;
  /** One resource-problem line per interval, whatever its kind: a flood stays one line a second. */
  readonly #resourceLog = new KeyedRateLimit({ intervalMs: RESOURCE_LOG_INTERVAL_MS, clock: { now: () => performance.now() } });

  constructor(opts: PeerTrackerOptions) {
    this.#procRoot = opts.procRoot;
    this.#logger = opts.logger;
    this.#metrics = opts.metrics;
    this.#limits = opts.limits ?? DEFAULT_CALLER_LIMITS;
    this.#ledger = new CallerLedger(this.#limits);
    this.#activity = opts.activity;
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
    let caller: CallerKey | undefined;
    let refusal: Refusal | undefined;
    if (credentials.kind === 'process') {
      caller = { pid: credentials.pid, group: callerGroup(this.#procRoot, credentials.pid) };
      const over = this.#ledger.openConnection(caller);
      if (over !== undefined) {
        this.#metrics?.limitRefused(over.limit).inc();
        if (over.action === 'drop') {
          this.#logResourceProblem({ caller_pid: credentials.pid, limit: over.limit }, 'dropping workload connection: caller is over its connection limit');
          releasePeerCredentials(credentials);
          socket.destroy();
          return false;
        }
        refusal = { code: Code.RESOURCE_EXHAUSTED, message: over.message };
        this.#logResourceProblem({ caller_pid: credentials.pid, limit: over.limit }, 'workload connection refused: caller is over its limit');
      }
    } else if (credentials.kind === 'unavailable') {
      this.#metrics?.peerCredentialErrors(credentials.cause).inc();
      refusal = { code: Code.UNAVAILABLE, message: credentials.reason };
      this.#logResourceProblem({ cause: credentials.cause, error: credentials.reason }, 'workload connection cannot be identified: the agent is short of a resource');
    } else if (credentials.kind === 'unattestable') {
      this.#logger.warn({ reason: credentials.reason }, 'workload connection cannot be attested');
    }
    this.#counter += 1;
    const key = `${this.#keyPrefix}${this.#counter}`;
    const entry: Entry = { peer: { key, credentials }, socket, caller, refusal, revoked: undefined };
    this.#entries.set(key, entry);
    if (caller !== undefined && credentials.kind === 'process') this.#activity?.connected(credentials.pid, credentials.uid, credentials.gid, caller.group);
    // Public grpc-js API (getPeer) reads socket.remoteAddress, which Unix sockets leave undefined.
    Object.defineProperty(socket, 'remoteAddress', { value: key, configurable: true, enumerable: false });
    socket.once('close', () => this.#forget(key));
    return true;
  }

  /**
   * Logs a resource problem at most once per interval (a flood of them must not become a flood
   * of log lines), with how many were not logged since the last line.
   */
  #logResourceProblem(fields: Record<string, unknown>, message: string): void {
    const decision = this.#resourceLog.admit('resource');
    if (decision.admitted) this.#logger.error({ ...fields, suppressed: decision.suppressed }, message);
  }

  /** The caller of a call, by the key `call.getPeer()` returned; Unauthenticated if unknown. */
  lookup(peerKey: string): TrackedPeer {
    const entry = this.#entries.get(peerKey);
    if (entry === undefined) throw new ApiError(Code.UNAUTHENTICATED, `${ORIGINAL_CALLER_PREFIX}connection is not tracked`);
    if (entry.revoked !== undefined) throw new ApiError(Code.UNAUTHENTICATED, entry.revoked);
    if (entry.refusal !== undefined) {
      this.#closeSoon(entry);
      throw new ApiError(entry.refusal.code, entry.refusal.message);
    }
    if (entry.peer.credentials.kind === 'unattestable') throw new ApiError(Code.UNAUTHENTICATED, entry.peer.credentials.reason);
    return entry.peer;
  }

  /**
   * Counts a call in progress against its caller's limit; returns the release to call when it
   * ends (idempotent). Throws ResourceExhausted past the limit.
   */
  startCall(peer: TrackedPeer): () => void {
    const entry = this.#entries.get(peer.key);
    if (entry?.caller === undefined || entry.refusal !== undefined) return () => {};
    const started = this.#ledger.startCall(entry.caller);
    if (typeof started === 'function') return started;
    this.#metrics?.limitRefused(started.limit).inc();
    throw new ApiError(Code.RESOURCE_EXHAUSTED, started.message);
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
    if (failure.kind === 'unavailable') {
      // The agent could not look; the caller may be fine. Say so, and let the client retry.
      this.#metrics?.peerCredentialErrors(failure.cause).inc();
      this.#logResourceProblem({ caller_pid: credentials.pid, cause: failure.cause, error: failure.reason }, 'workload caller could not be checked: the agent is short of a resource');
      throw new ApiError(Code.UNAVAILABLE, failure.reason);
    }
    const message = `${ORIGINAL_CALLER_PREFIX}${failure.reason}`;
    this.#revoke(peer.key, message, credentials.pid);
    throw new ApiError(Code.UNAUTHENTICATED, message);
  }

  #revoke(key: string, message: string, pid: number): void {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.revoked !== undefined) return;
    entry.revoked = message;
    this.#logger.warn({ caller_pid: pid, reason: message }, 'closing workload connection: original caller is gone');
    this.#closeSoon(entry);
  }

  /**
   * Closes a connection shortly. Why a delay: the status of the failing call is written
   * asynchronously by the HTTP/2 session; destroying the socket at once could swallow it.
   */
  #closeSoon(entry: Entry): void {
    setTimeout(() => entry.socket.destroy(), REVOKE_CLOSE_DELAY_MS).unref();
  }

  #forget(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    releasePeerCredentials(entry.peer.credentials);
    if (entry.caller !== undefined) {
      this.#ledger.closeConnection(entry.caller, entry.refusal !== undefined);
      this.#activity?.disconnected(entry.caller.pid);
    }
  }
}
