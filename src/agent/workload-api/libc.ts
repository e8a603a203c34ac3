/**
 * The handful of Linux syscalls the Workload API needs and Node does not expose, bound
 * through koffi: socket options (SO_PEERCRED, SO_PEERPIDFD, SO_DOMAIN, SO_ACCEPTCONN),
 * pidfd_open, poll and socketpair. Every wrapper returns a result instead of throwing so callers can
 * decide what an errno means; bindings are loaded on first use.
 */
import koffi from 'koffi';

/** A syscall outcome: the value, or the errno it failed with. */
export type SyscallResult<T> = { ok: true; value: T } | { ok: false; errno: number };

/** errno values we branch on (Linux, all architectures Node supports). */
export const Errno = {
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EINVAL: 22,
  ENOSYS: 38,
  ENOTSOCK: 88,
  ENOPROTOOPT: 92,
} as const;

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const SO_PEERCRED = 17;
const SO_DOMAIN = 39;
const SO_PEERPIDFD = 77;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
/** O_CLOEXEC, the same value on every architecture Node supports on Linux. */
const SOCK_CLOEXEC = 0o2000000;
const POLLIN = 0x0001;
const POLLNVAL = 0x0020;
/** x86_64 and aarch64 share the "generic" numbers for these two (added in Linux 5.3). */
const SYS_PIDFD_OPEN = 434;

/** The process credentials the kernel recorded when the peer called connect(). */
export interface Ucred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

type NativeFn = (...args: unknown[]) => number;

interface Bindings {
  getsockopt: NativeFn;
  poll: NativeFn;
  syscall: NativeFn;
  socketpair: NativeFn;
}

let bindings: Bindings | undefined;

/** Loads libc symbols from the running process (works with glibc and musl alike). */
function libc(): Bindings {
  if (bindings !== undefined) return bindings;
  if (process.platform !== 'linux') throw new Error('workload api: peer credentials need Linux');
  const lib = koffi.load(null);
  bindings = {
    getsockopt: lib.func('int getsockopt(int, int, int, _Inout_ uint8_t *, _Inout_ uint32_t *)') as NativeFn,
    poll: lib.func('int poll(_Inout_ uint8_t *, unsigned long, int)') as NativeFn,
    syscall: lib.func('long syscall(long, ...)') as NativeFn,
    socketpair: lib.func('int socketpair(int, int, int, _Inout_ uint8_t *)') as NativeFn,
  };
  return bindings;
}

/** Checks that the bindings load; throws a clear error on platforms without them. */
export function assertLibcAvailable(): void {
  libc();
}

function getsockopt(fd: number, option: number, size: number): SyscallResult<Buffer> {
  const buf = Buffer.alloc(size);
  const len = [size];
  const rc = libc().getsockopt(fd, SOL_SOCKET, option, buf, len);
  if (rc !== 0) return { ok: false, errno: koffi.errno() };
  return { ok: true, value: buf.subarray(0, len[0]) };
}

function getsockoptInt(fd: number, option: number): SyscallResult<number> {
  const result = getsockopt(fd, option, 4);
  if (!result.ok) return result;
  if (result.value.length < 4) return { ok: false, errno: Errno.EINVAL };
  return { ok: true, value: result.value.readInt32LE(0) };
}

/** True when `fd` is a connected (not listening) AF_UNIX socket. */
export function isConnectedUnixSocket(fd: number): boolean {
  const domain = getsockoptInt(fd, SO_DOMAIN);
  const listening = getsockoptInt(fd, SO_ACCEPTCONN);
  return domain.ok && domain.value === AF_UNIX && listening.ok && listening.value === 0;
}

/** SO_PEERCRED: `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`, pid 0 when not visible to us. */
export function peerCredentials(fd: number): SyscallResult<Ucred> {
  const result = getsockopt(fd, SO_PEERCRED, 12);
  if (!result.ok) return result;
  if (result.value.length < 12) return { ok: false, errno: Errno.EINVAL };
  const b = result.value;
  return { ok: true, value: { pid: b.readInt32LE(0), uid: b.readUInt32LE(4), gid: b.readUInt32LE(8) } };
}

/**
 * SO_PEERPIDFD (Linux ≥ 6.5): a pidfd for the process that called connect(), taken by the
 * kernel from the socket itself, so it cannot race with PID reuse. ENOPROTOOPT on older kernels.
 */
export function peerPidfd(fd: number): SyscallResult<number> {
  return getsockoptInt(fd, SO_PEERPIDFD);
}

/** pidfd_open(pid, 0) (Linux ≥ 5.3): ENOSYS on older kernels, ESRCH if the process is gone. */
export function pidfdOpen(pid: number): SyscallResult<number> {
  const rc = libc().syscall(SYS_PIDFD_OPEN, 'int', pid, 'uint', 0);
  if (rc < 0) return { ok: false, errno: koffi.errno() };
  return { ok: true, value: rc };
}

/** Tries of a call interrupted by a signal (EINTR) before its failure is returned. */
export const EINTR_TRIES = 16;

/**
 * Calls `attempt` again while it fails with EINTR, at most {@link EINTR_TRIES} times in all.
 * Why: poll() is never restarted after a signal handler (signal(7)), and even with a zero
 * timeout Linux fails it with EINTR when no descriptor is ready and a signal is pending (any
 * signal the process handles: SIGCHLD from a child, SIGPROF while profiling…). A process
 * that is alive is exactly the "not ready" case, so callers saw spurious failures.
 */
export function retryOnEintr<T>(attempt: () => SyscallResult<T>): SyscallResult<T> {
  let result = attempt();
  for (let tries = 1; !result.ok && result.errno === Errno.EINTR && tries < EINTR_TRIES; tries++) result = attempt();
  return result;
}

/**
 * Whether the process behind a pidfd has exited: a pidfd polls readable once its process
 * terminates (zombie or reaped), and it keeps referring to that process even if the PID is
 * reused, so "not readable" proves the original caller still runs.
 */
export function pidfdExited(pidfd: number): SyscallResult<boolean> {
  return retryOnEintr(() => pollPidfd(pidfd));
}

function pollPidfd(pidfd: number): SyscallResult<boolean> {
  const pollfd = Buffer.alloc(8);
  pollfd.writeInt32LE(pidfd, 0);
  pollfd.writeInt16LE(POLLIN, 4);
  const rc = libc().poll(pollfd, 1, 0);
  if (rc < 0) return { ok: false, errno: koffi.errno() };
  const revents = pollfd.readInt16LE(6);
  if ((revents & POLLNVAL) !== 0) return { ok: false, errno: Errno.EBADF };
  return { ok: true, value: rc > 0 && (revents & POLLIN) !== 0 };
}

/** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected descriptors, owned by the caller. */
export function unixSocketPair(): SyscallResult<readonly [number, number]> {
  const fds = Buffer.alloc(8);
  const rc = libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
  if (rc !== 0) return { ok: false, errno: koffi.errno() };
  return { ok: true, value: [fds.readInt32LE(0), fds.readInt32LE(4)] };
}
