/**
 * Owning a Unix socket path, shared by the agent's Workload API socket and the server's admin
 * socket:
 *
 * - claim: refuse a path another process is serving on, and anything that is not a socket;
 *   only a stale socket (nobody listening, e.g. left by a `kill -9`) may be replaced;
 * - publish: bind under a temporary name in the same directory, set the final mode, then
 *   rename it over the path, so the socket appears atomically and already with its mode;
 * - remove on exit only if the path is still the socket this process published (dev + inode).
 *
 * Why the temporary name: libuv unlinks the path it bound when the listener closes, whatever
 * is at that path by then. Binding under a private name means that unlink never hits the
 * configured path, which another process may own by then; the exit path goes through
 * {@link removeSocketIfOwned} instead.
 *
 * Left open: two processes starting within the same millisecond on a stale path can both see
 * it stale, and the later rename wins; the earlier one then serves an unreachable socket. A
 * second process started while the first is serving is always refused.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rename, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { PathError, toPathError } from './path-errors.ts';

/** Linux keeps a socket path in `sun_path[108]`, NUL included: at most 107 bytes. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** The prefix of messages until a caller names the config field. */
const CONTEXT = 'unix socket';

/** How long a probe waits for the existing socket to accept a connection. */
export const PROBE_TIMEOUT_MS = 1_000;

/** Identifies the socket file this process published (device + inode). */
export interface SocketFileId {
  readonly dev: number;
  readonly ino: number;
}

/** What connecting to an existing socket file says about it. */
export type SocketProbe =
  | { readonly state: 'absent' }
  | { readonly state: 'stale' }
  | { readonly state: 'live' }
  | { readonly state: 'unknown'; readonly reason: string };

/** Who would be serving there, for messages ("another agent is serving on it"). */
export interface SocketOwnerOptions {
  /** `agent` or `server`. */
  readonly role: string;
  /** Probe timeout; default {@link PROBE_TIMEOUT_MS}. */
  readonly probeTimeoutMs?: number;
}

/** Why `path` cannot be a Unix socket path, or undefined when it can. Pure. */
export function socketPathLengthProblem(path: string): string | undefined {
  const bytes = Buffer.byteLength(path);
  if (bytes <= MAX_SOCKET_PATH_BYTES) return undefined;
  return `is ${bytes} bytes long, but a Unix socket path can have at most ${MAX_SOCKET_PATH_BYTES}; choose a shorter path`;
}

/**
 * What a failed connect to an existing socket file means. Pure.
 *
 * Only a definite "nobody listens" (ECONNREFUSED) makes a socket stale. EAGAIN is a listener
 * whose backlog is full: alive. Anything else (EACCES, a timeout, …) cannot prove the socket
 * stale and is reported as unknown, which callers treat as in use: replacing a live socket
 * cuts off every workload of the process serving it, while refusing a stale one costs the
 * operator one `rm`.
 */
export function classifyConnectError(code: string | undefined, message: string): SocketProbe {
  switch (code) {
    case 'ECONNREFUSED':
      return { state: 'stale' };
    case 'ENOENT':
      return { state: 'absent' };
    case 'EAGAIN':
      return { state: 'live' };
    default:
      return { state: 'unknown', reason: code ?? message };
  }
}

/** Connects to the socket at `path` and says whether a process is serving on it. */
export function probeSocket(path: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<SocketProbe> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (probe: SocketProbe): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(probe);
    };
    const timer = setTimeout(() => done({ state: 'unknown', reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.once('connect', () => done({ state: 'live' }));
    socket.once('error', (err: NodeJS.ErrnoException) => done(classifyConnectError(err.code, err.message)));
  });
}

async function lstatOrUndefined(path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Refuses `path` unless it is free or holds a stale socket (see the file comment). */
async function checkFree(path: string, owner: SocketOwnerOptions): Promise<void> {
  const p = JSON.stringify(path);
  let existing: Awaited<ReturnType<typeof lstat>> | undefined;
  try {
    existing = await lstatOrUndefined(path);
  } catch (err) {
    throw await toPathError(err, path, 'socket', CONTEXT);
  }
  if (existing === undefined) return;
  if (!existing.isSocket()) throw new PathError(path, `${p} exists and is not a socket; move it away or choose another socket_path`, CONTEXT);
  const probe = await probeSocket(path, owner.probeTimeoutMs ?? PROBE_TIMEOUT_MS);
  if (probe.state === 'live') {
    throw new PathError(path, `${p} is in use: another ${owner.role} is serving on it; stop that ${owner.role} first, or give this one its own socket_path`, CONTEXT);
  }
  if (probe.state === 'unknown') {
    throw new PathError(path, `cannot tell whether another ${owner.role} is serving on ${p} (connect: ${probe.reason}); if none is, remove the file`, CONTEXT);
  }
}

/**
 * Makes `path` ready for a new socket: creates its directory (mode `dirMode`) and checks that
 * nothing but a stale socket is there. Throws {@link PathError} (never touching the path) otherwise.
 */
export async function claimSocketPath(path: string, owner: SocketOwnerOptions & { readonly dirMode: number }): Promise<void> {
  const tooLong = socketPathLengthProblem(path);
  if (tooLong !== undefined) throw new PathError(path, `${JSON.stringify(path)} ${tooLong}`, CONTEXT);
  try {
    await mkdir(dirname(path), { recursive: true, mode: owner.dirMode });
  } catch (err) {
    throw await toPathError(err, path, 'socket', CONTEXT);
  }
  await checkFree(path, owner);
}

/** A temporary name beside `path` that fits in a socket address whenever `path` does. */
function temporaryName(path: string): string {
  const dir = dirname(path);
  const room = Math.max(MAX_SOCKET_PATH_BYTES - Buffer.byteLength(dir) - 1, Buffer.byteLength(basename(path)));
  const length = Math.min(12, room);
  const hex = randomBytes(8).toString('hex');
  return join(dir, length >= 2 ? `.${hex.slice(0, length - 1)}` : hex.slice(0, 1));
}

/** How to bind and unbind the listener that {@link publishSocket} publishes. */
export interface PublishOptions extends SocketOwnerOptions {
  /** The socket file's mode (0o777 for the Workload API, 0o600 for the admin socket). */
  readonly mode: number;
  /** Binds the listener to `tempPath`; rejects on failure. */
  bind(tempPath: string): Promise<void>;
  /** Closes the listener after a failure once bound. */
  unbind(): Promise<void>;
}

/**
 * Binds under a temporary name, sets `mode`, and renames the socket over `path` (call
 * {@link claimSocketPath} first). Returns the published file's identity for
 * {@link removeSocketIfOwned}. On failure nothing is left behind and `path` is untouched.
 */
export async function publishSocket(path: string, options: PublishOptions): Promise<SocketFileId> {
  let temp = '';
  for (let attempt = 0; ; attempt++) {
    temp = temporaryName(path);
    try {
      await options.bind(temp);
      break;
    } catch (err) {
      // A file already has this random name: try another.
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 5) continue;
      throw await toPathError(err, path, 'socket', CONTEXT);
    }
  }
  try {
    await chmod(temp, options.mode);
    const st = await lstat(temp);
    // Checked again just before the rename: another process may have started meanwhile.
    await checkFree(path, options);
    await rename(temp, path);
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    await options.unbind().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw await toPathError(err, path, 'socket', CONTEXT);
  }
}

/** Removes the socket file if it is still the one identified by `id` (another process may own the path now). */
export async function removeSocketIfOwned(path: string, id: SocketFileId): Promise<void> {
  const st = await lstatOrUndefined(path);
  if (st === undefined || !st.isSocket() || st.dev !== id.dev || st.ino !== id.ino) return;
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
