/**
 * Who is at the other end of an accepted Unix-socket connection, captured synchronously in
 * the accept callback: SO_PEERCRED (pid, uid, gid), a pidfd for that process, the owner of
 * /proc/<pid>, and its start time where no pidfd pins the process. These facts are what the
 * PID-reuse guard re-checks later.
 *
 * Why no start time with a pidfd: a pidfd refers to one process, and it polls readable once
 * that process has exited (zombie or reaped). While it does not, the process is alive, so its
 * PID cannot have been reused and /proc/<pid> is that process: the start time could only ever
 * read the same. Reading /proc/<pid>/stat is the kernel's costly file (it sums every thread's
 * times): about 25 µs, twice per connection.
 */
import { closeSync, readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Parsed } from '../../common/spiffe-id.ts';
import { Errno, isConnectedUnixSocket, peerCredentials, peerPidfd, pidfdExited, pidfdOpen } from './libc.ts';

/** Facts about the connecting process. Immutable except that the pidfd is closed on release. */
export interface ProcessPeer {
  readonly kind: 'process';
  readonly pid: number;
  /** SO_PEERCRED uid/gid: the caller's effective IDs at connect(). */
  readonly uid: number;
  readonly gid: number;
  /** A pidfd for the caller, or undefined on kernels without pidfds (< 5.3). */
  readonly pidfd: number | undefined;
  /**
   * Field 22 of /proc/<pid>/stat (clock ticks since boot), kept as text as SPIRE does; only
   * without a pidfd (see the file comment), undefined with one.
   */
  readonly startTime: string | undefined;
  /** Owner of /proc/<pid> at accept time. */
  readonly procUid: number;
  readonly procGid: number;
}

/** A connection whose caller cannot be identified; every call on it is Unauthenticated. */
export interface UnattestablePeer {
  readonly kind: 'unattestable';
  /** The full Unauthenticated message. */
  readonly reason: string;
}

/**
 * A connection whose caller could not be identified because the AGENT lacked a resource (file
 * descriptors, memory): the caller may be perfectly alive. Calls on it get Unavailable with
 * the cause, and the connection is closed so the client's retry starts afresh.
 */
export interface UnavailablePeer {
  readonly kind: 'unavailable';
  /** The full Unavailable message. */
  readonly reason: string;
  /** The errno name behind it (`EMFILE`, `ENFILE`, …, or `other`): the metric label. */
  readonly cause: ResourceCause;
}

/** What the accept callback learned about a connection's peer. */
export type PeerCredentials = ProcessPeer | UnattestablePeer | UnavailablePeer;

/** Errno names reported as a resource problem of the agent (a closed set: it is a metric label). */
export type ResourceCause = 'EMFILE' | 'ENFILE' | 'ENOMEM' | 'EAGAIN' | 'EACCES' | 'EPERM' | 'other';

const ERRNO_NAMES: ReadonlyMap<number, ResourceCause> = new Map([
  [24, 'EMFILE'],
  [23, 'ENFILE'],
  [12, 'ENOMEM'],
  [11, 'EAGAIN'],
  [13, 'EACCES'],
  [1, 'EPERM'],
]);

/** The closed-set name of a numeric errno or a Node error code. */
export function resourceCause(errno: number | string | undefined): ResourceCause {
  if (typeof errno === 'number') return ERRNO_NAMES.get(errno) ?? 'other';
  return [...ERRNO_NAMES.values()].find((name) => name === errno) ?? 'other';
}

/** Why the agent could not do `what`, as the caller's Unavailable message. */
export function unavailableReason(what: string, cause: ResourceCause, detail: string): string {
  const hint =
    cause === 'EMFILE' || cause === 'ENFILE'
      ? ': the agent is out of file descriptors (raise its open-files limit)'
      : cause === 'ENOMEM'
        ? ': the agent is out of memory'
        : '';
  return `could not identify the caller: ${what} failed with ${detail}${hint}`;
}

/** The message for a caller that is gone before we could pin it down. */
export const CALLER_GONE = 'could not verify existence of the original caller: caller exited before it could be identified';

/** The message for PID 0 (the caller lives in a PID namespace the agent cannot see). */
export const CALLER_PID_UNKNOWN =
  'could not resolve caller information: the caller is in a PID namespace the agent cannot see (run the agent with hostPID)';

/**
 * The file descriptor of an accepted socket.
 *
 * Why `_handle.fd`: Node has no public API for a socket's descriptor. `_handle` is the libuv
 * pipe wrap behind every net.Socket and its `fd` accessor (uv_fileno) has existed since Node
 * 0.x; Node itself and many native addons rely on it. It is only trusted when it holds up:
 * it must be a non-negative integer naming a connected AF_UNIX socket (not the listener).
 * We read it synchronously in the connection callback, before any I/O or close can happen,
 * so the number cannot have been closed and reused for another file in between.
 */
export function socketFd(socket: Socket): number | undefined {
  const handle: unknown = Reflect.get(socket, '_handle');
  if (typeof handle !== 'object' || handle === null) return undefined;
  const fd: unknown = Reflect.get(handle, 'fd');
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) return undefined;
  return isConnectedUnixSocket(fd) ? fd : undefined;
}

/**
 * The start time (field 22) of a `/proc/<pid>/stat` line. The command name (field 2) may hold
 * spaces and parentheses, so fields are counted from the LAST ')'.
 */
export function parseStartTime(stat: string): Parsed<string> {
  const close = stat.lastIndexOf(')');
  if (close === -1 || stat.indexOf('(') === -1) return { ok: false, error: 'stat data has no parenthesized command name' };
  // After ") " come fields 3, 4, …; field 22 is therefore the 20th of them, and a stat line
  // with fewer than 36 of them (field 38) predates Linux 2.1.22 (field 52 exists since 3.5).
  // Scanned rather than split: this runs twice per connection, and split() built ~50 strings.
  const malformed = { ok: false as const, error: 'stat data is malformed or from an unsupported kernel' };
  const start = nthSpaceAfter(stat, close + 1, 19);
  const end = nthSpaceAfter(stat, start, 1);
  if (start === -1 || end === -1 || nthSpaceAfter(stat, end, 15) === -1) return malformed;
  const value = stat.slice(start + 1, end);
  return /^\d+$/.test(value) ? { ok: true, value } : malformed;
}

/** The index of the `n`th space after `from` (exclusive), or -1. */
function nthSpaceAfter(text: string, from: number, n: number): number {
  if (from === -1) return -1;
  let at = from;
  for (let i = 0; i < n; i++) {
    at = text.indexOf(' ', at + 1);
    if (at === -1) return -1;
  }
  return at;
}

/** What /proc says about a process now. */
export interface ProcessFacts {
  readonly startTime: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * Why /proc could not be read: `gone` (the process no longer exists: ENOENT, ESRCH, or stat
 * data that is not a live process's) or a problem of the agent's own (`cause`).
 */
export interface ProcReadFailure {
  readonly ok: false;
  readonly error: string;
  /** Undefined when the process is gone; the errno name when the agent could not look. */
  readonly cause: ResourceCause | undefined;
}

/** Errors of a /proc read that mean the process does not exist (any more). */
const GONE_CODES = new Set(['ENOENT', 'ESRCH']);

/** Reads a process's start time and the owner of its /proc directory. */
export function readProcessFacts(procRoot: string, pid: number): { ok: true; value: ProcessFacts } | ProcReadFailure {
  let stat: string;
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'latin1');
  } catch (err) {
    return procReadFailure(procRoot, pid, err);
  }
  const owner = readProcessOwner(procRoot, pid);
  if (!owner.ok) return owner;
  const startTime = parseStartTime(stat);
  if (!startTime.ok) return { ok: false, error: startTime.error, cause: undefined };
  return { ok: true, value: { startTime: startTime.value, ...owner.value } };
}

/** Reads the owner of a process's /proc directory (its uid and gid as /proc shows them). */
export function readProcessOwner(procRoot: string, pid: number): { ok: true; value: { uid: number; gid: number } } | ProcReadFailure {
  try {
    const { uid, gid } = statSync(`${procRoot}/${pid}`);
    return { ok: true, value: { uid, gid } };
  } catch (err) {
    return procReadFailure(procRoot, pid, err);
  }
}

function procReadFailure(procRoot: string, pid: number, err: unknown): ProcReadFailure {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return { ok: false, error: `could not read ${procRoot}/${pid}: ${code}`, cause: GONE_CODES.has(code) ? undefined : resourceCause(code) };
}

/** Errnos that mean "this kernel has no such facility", not a failure. */
const UNSUPPORTED = new Set<number>([Errno.ENOPROTOOPT, Errno.ENOSYS, Errno.EINVAL]);

/**
 * Opens a pidfd for the peer: SO_PEERPIDFD where the kernel has it, else pidfd_open(pid);
 * no pidfd on kernels with neither. Resource errors (EMFILE…) are reported, never taken for
 * a vanished caller.
 */
function openPeerPidfd(fd: number, pid: number): { pidfd: number | undefined } | 'gone' | UnavailablePeer {
  const fromSocket = peerPidfd(fd);
  if (fromSocket.ok) return { pidfd: fromSocket.value };
  if (fromSocket.errno === Errno.ESRCH) return 'gone';
  if (!UNSUPPORTED.has(fromSocket.errno)) return unavailablePeer('opening a pidfd (SO_PEERPIDFD)', fromSocket.errno);
  // Older kernel: fall back to pidfd_open. Between connect() and here the PID could in theory
  // have been reused; the start-time and owner checks below narrow that window as SPIRE does.
  const opened = pidfdOpen(pid);
  if (opened.ok) return { pidfd: opened.value };
  if (opened.errno === Errno.ESRCH) return 'gone';
  if (!UNSUPPORTED.has(opened.errno)) return unavailablePeer('opening a pidfd (pidfd_open)', opened.errno);
  return { pidfd: undefined };
}

function unavailablePeer(what: string, errno: number): UnavailablePeer {
  const cause = resourceCause(errno);
  return { kind: 'unavailable', cause, reason: unavailableReason(what, cause, cause === 'other' ? `errno ${errno}` : cause) };
}

/** Closes the pidfd of a peer (idempotence is the caller's job). */
export function releasePeerCredentials(peer: PeerCredentials): void {
  if (peer.kind === 'process' && peer.pidfd !== undefined) closeSync(peer.pidfd);
}

/**
 * Why the facts read at accept cannot be used, or undefined when they can. With a pidfd,
 * "still running after we read /proc" proves the facts are the caller's own.
 */
function factsFailure(
  procRoot: string,
  pid: number,
  facts: { ok: true } | ProcReadFailure,
  pidfd: number | undefined,
): PeerCredentials | undefined {
  if (pidfd !== undefined) {
    const exited = pidfdExited(pidfd);
    if (!exited.ok) return unavailablePeer("polling the caller's pidfd", exited.errno);
    if (exited.value) return { kind: 'unattestable', reason: CALLER_GONE };
  }
  if (facts.ok) return undefined;
  if (facts.cause === undefined) return { kind: 'unattestable', reason: CALLER_GONE };
  return { kind: 'unavailable', cause: facts.cause, reason: unavailableReason(`reading ${procRoot}/${pid}`, facts.cause, facts.cause) };
}

/**
 * Captures the peer's credentials. Must run synchronously in the connection callback.
 * Throws when the socket is not a usable Unix connection (the caller drops it).
 */
export function capturePeerCredentials(socket: Socket, procRoot: string): PeerCredentials {
  const fd = socketFd(socket);
  if (fd === undefined) throw new Error('workload api: accepted connection has no readable Unix socket descriptor');
  const ucred = peerCredentials(fd);
  if (!ucred.ok) throw new Error(`workload api: SO_PEERCRED failed with errno ${ucred.errno}`);
  const { pid, uid, gid } = ucred.value;
  if (pid === 0) return { kind: 'unattestable', reason: CALLER_PID_UNKNOWN };

  const opened = openPeerPidfd(fd, pid);
  if (opened === 'gone') return { kind: 'unattestable', reason: CALLER_GONE };
  if ('kind' in opened) return opened;
  const { pidfd } = opened;
  // With a pidfd, the owner is all /proc has to add (see the file comment).
  const facts = pidfd !== undefined ? readProcessOwner(procRoot, pid) : readProcessFacts(procRoot, pid);
  const failure = factsFailure(procRoot, pid, facts, pidfd);
  if (failure !== undefined || !facts.ok) {
    if (pidfd !== undefined) closeSync(pidfd);
    return failure ?? { kind: 'unattestable', reason: CALLER_GONE };
  }
  return {
    kind: 'process',
    pid,
    uid,
    gid,
    pidfd,
    startTime: 'startTime' in facts.value ? facts.value.startTime : undefined,
    procUid: facts.value.uid,
    procGid: facts.value.gid,
  };
}
