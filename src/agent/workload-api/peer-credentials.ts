/**
 * Who is at the other end of an accepted Unix-socket connection, captured synchronously in
 * the accept callback: SO_PEERCRED (pid, uid, gid), a pidfd for that process, its start time
 * and the owner of /proc/<pid>. These facts are what the PID-reuse guard re-checks later.
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
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot), kept as text as SPIRE does. */
  readonly startTime: string;
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

/** What the accept callback learned about a connection's peer. */
export type PeerCredentials = ProcessPeer | UnattestablePeer;

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
  // After ") " come fields 3, 4, …; field 22 is therefore the 20th of them.
  const fields = stat.slice(close + 2).split(' ');
  const value = fields[19];
  // Field 52 exists since Linux 3.5; anything shorter than field 38 predates 2.1.22.
  if (value === undefined || fields.length < 36 || !/^\d+$/.test(value)) {
    return { ok: false, error: 'stat data is malformed or from an unsupported kernel' };
  }
  return { ok: true, value };
}

/** What /proc says about a process now. */
export interface ProcessFacts {
  readonly startTime: string;
  readonly uid: number;
  readonly gid: number;
}

/** Reads a process's start time and the owner of its /proc directory. */
export function readProcessFacts(procRoot: string, pid: number): Parsed<ProcessFacts> {
  let stat: string;
  let owner: { uid: number; gid: number };
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'latin1');
    owner = statSync(`${procRoot}/${pid}`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, error: `could not read ${procRoot}/${pid}: ${code}` };
  }
  const startTime = parseStartTime(stat);
  if (!startTime.ok) return startTime;
  return { ok: true, value: { startTime: startTime.value, uid: owner.uid, gid: owner.gid } };
}

/** Opens a pidfd for the peer: SO_PEERPIDFD where the kernel has it, else pidfd_open(pid). */
function openPeerPidfd(fd: number, pid: number): { pidfd: number | undefined } | 'gone' {
  const fromSocket = peerPidfd(fd);
  if (fromSocket.ok) return { pidfd: fromSocket.value };
  if (fromSocket.errno === Errno.ESRCH) return 'gone';
  // Older kernel: fall back to pidfd_open. Between connect() and here the PID could in theory
  // have been reused; the start-time and owner checks below narrow that window as SPIRE does.
  const opened = pidfdOpen(pid);
  if (opened.ok) return { pidfd: opened.value };
  if (opened.errno === Errno.ESRCH) return 'gone';
  return { pidfd: undefined };
}

/** Closes the pidfd of a peer (idempotence is the caller's job). */
export function releasePeerCredentials(peer: PeerCredentials): void {
  if (peer.kind === 'process' && peer.pidfd !== undefined) closeSync(peer.pidfd);
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
  const { pidfd } = opened;
  const facts = readProcessFacts(procRoot, pid);
  // With a pidfd, "still running after we read /proc" proves the facts are the caller's own.
  const exited = pidfd === undefined ? { ok: true as const, value: false } : pidfdExited(pidfd);
  if (!facts.ok || !exited.ok || exited.value) {
    if (pidfd !== undefined) closeSync(pidfd);
    return { kind: 'unattestable', reason: CALLER_GONE };
  }
  return {
    kind: 'process',
    pid,
    uid,
    gid,
    pidfd,
    startTime: facts.value.startTime,
    procUid: facts.value.uid,
    procGid: facts.value.gid,
  };
}
