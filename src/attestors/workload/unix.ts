/**
 * The `unix` workload attestor: the caller's effective uid/gid, their names, its
 * supplementary groups and, when enabled, the path and SHA-256 of its executable
 * (SPIRE's `pkg/agent/plugin/workloadattestor/unix/unix_posix.go`).
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { AttestTrace, WorkloadAttestorPlugin } from './workload-attestor-plugin.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { parseGroup, parsePasswd, type IdNameMap } from './passwd.ts';
import { parseProcStatus } from './proc-status.ts';

/** Options of the unix attestor; every field is optional. */
export interface UnixAttestorOptions {
  /** Where the host's procfs is mounted. Default: `$HOST_PROC` if set and non-empty, else `/proc`. */
  procRoot?: string;
  /** Where `passwd` and `group` are read from (the agent's own files, as in SPIRE). Default `/etc`. */
  etcRoot?: string;
  /** Also emit `path:` and `sha256:` of the executable (SPIRE `discover_workload_path`). Default false. */
  discoverWorkloadPath?: boolean;
  /**
   * Largest executable to hash, in bytes (SPIRE `workload_size_limit`): 0 = no limit,
   * negative = emit `path:` but never hash. Default 0, as in SPIRE.
   */
  workloadSizeLimit?: number;
  /** How often (ms) passwd/group are checked for changes; default 1000. */
  nameRecheckMs?: number;
}

const PLUGIN_NAME = 'unix';
const HASH_CHUNK_BYTES = 256 * 1024;
const NO_NAMES: IdNameMap = new Map();

/** How stale a passwd/group lookup may be: edits show up within this time. */
const RECHECK_MS = 1_000;

/** Creates the `unix` workload attestor plugin. */
export function createUnixAttestor(options: UnixAttestorOptions = {}): WorkloadAttestorPlugin {
  const procRoot = options.procRoot ?? (process.env['HOST_PROC'] || '/proc');
  const etcRoot = options.etcRoot ?? '/etc';
  const discoverWorkloadPath = options.discoverWorkloadPath ?? false;
  const sizeLimit = options.workloadSizeLimit ?? 0;
  if (!Number.isSafeInteger(sizeLimit)) {
    throw new ApiError(Code.INVALID_ARGUMENT, `unix: workload_size_limit must be an integer, not ${sizeLimit}`);
  }
  const recheckMs = options.nameRecheckMs ?? RECHECK_MS;
  const userNames = cachedIdNames(join(etcRoot, 'passwd'), parsePasswd, recheckMs);
  const groupNames = cachedIdNames(join(etcRoot, 'group'), parseGroup, recheckMs);

  async function attest(pid: number, signal: AbortSignal, trace?: AttestTrace): Promise<string[]> {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new ApiError(Code.INVALID_ARGUMENT, `unix: invalid pid ${pid}`);
    if (signal.aborted) throw cancelled(pid);
    const dir = join(procRoot, String(pid));
    const t0 = trace?.now() ?? 0;
    // procfs files are generated in memory: a synchronous read costs microseconds, far less
    // than a round trip through libuv's thread pool on this hot path.
    let text: string;
    try {
      text = readFileSync(join(dir, 'status'), 'utf8');
    } catch (err) {
      throw procError(err, pid, signal, 'reading status');
    }
    const parsed = parseProcStatus(text);
    if (!parsed.ok) throw new ApiError(Code.INTERNAL, `unix: malformed status of process ${pid}: ${parsed.error}`);
    const { uid, gid, groups } = parsed.value;
    const t1 = trace?.now() ?? 0;
    trace?.step('proc status', t1 - t0, { source: `/proc/${pid}/status` });

    const users = userNames();
    const groupMap = groupNames();
    const t2 = trace?.now() ?? 0;
    trace?.step('user and group names', t2 - t1, { source: '/etc/passwd, /etc/group (cached)' });
    const workload = discoverWorkloadPath ? await discoverWorkload(dir, pid, sizeLimit, signal) : undefined;
    if (signal.aborted) throw cancelled(pid);
    if (trace !== undefined && workload !== undefined) trace.step('workload path', trace.now() - t2, { hashed: workload.sha256 !== undefined });

    // SPIRE's emission order; names only when the lookup succeeds.
    const values: string[] = [`uid:${uid.effective}`];
    const user = users.get(uid.effective);
    if (user !== undefined) values.push(`user:${user}`);
    values.push(`gid:${gid.effective}`);
    const group = groupMap.get(gid.effective);
    if (group !== undefined) values.push(`group:${group}`);
    for (const id of groups) {
      values.push(`supplementary_gid:${id}`);
      const name = groupMap.get(id);
      if (name !== undefined) values.push(`supplementary_group:${name}`);
    }
    if (workload !== undefined) {
      values.push(`path:${workload.path}`);
      if (workload.sha256 !== undefined) values.push(`sha256:${workload.sha256}`);
    }
    return values;
  }

  return { name: PLUGIN_NAME, attest };
}

interface Workload {
  readonly path: string;
  readonly sha256: string | undefined;
}

async function discoverWorkload(dir: string, pid: number, sizeLimit: number, signal: AbortSignal): Promise<Workload> {
  const exe = join(dir, 'exe');
  const path = await readlink(exe).catch((err: unknown) => {
    throw procError(err, pid, signal, 'path lookup');
  });
  if (sizeLimit < 0) return { path, sha256: undefined };
  // Hash through /proc/<pid>/exe, not `path`: the link opens the very file the process
  // runs, even when `path` names another mount namespace's file or was replaced since.
  const sha256 = await sha256OfFile(exe, sizeLimit, signal, () => `unix: workload ${path} of process ${pid}`).catch(
    (err: unknown) => {
      throw err instanceof ApiError ? err : procError(err, pid, signal, 'hashing the executable');
    },
  );
  return { path, sha256 };
}

/**
 * Hex SHA-256 of a file, read in chunks so a large binary neither fills memory nor blocks
 * the event loop. A limit > 0 is checked against fstat before reading and again while
 * reading, so a file that grows in between is still refused.
 */
async function sha256OfFile(file: string, limit: number, signal: AbortSignal, subject: () => string): Promise<string> {
  const tooLarge = (size: number): ApiError =>
    new ApiError(Code.FAILED_PRECONDITION, `${subject()} exceeds the size limit (${size} > ${limit} bytes)`);
  const handle = await open(file, 'r');
  try {
    if (limit > 0) {
      const { size } = await handle.stat();
      if (size > limit) throw tooLarge(size);
    }
    const hash = createHash('sha256');
    const chunk = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    let total = 0;
    for (;;) {
      signal.throwIfAborted();
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (limit > 0 && total > limit) throw tooLarge(total);
      hash.update(chunk.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/**
 * A lookup of `passwd` or `group` that parses the file once and re-reads it only when its
 * stat identity (device, inode, size, mtime) changes, checked at most every RECHECK_MS, so
 * a burst of attestations costs no syscall at all. A missing or unreadable file means
 * "no names" (SPIRE then omits the `user:`/`group:` values).
 */
function cachedIdNames(path: string, parse: (text: string) => IdNameMap, recheckMs: number): () => IdNameMap {
  let cached: { dev: number; ino: number; size: number; mtimeMs: number; names: IdNameMap } | undefined;
  let checkedAt = -Infinity;

  return () => {
    const now = performance.now();
    if (cached !== undefined && now - checkedAt < recheckMs) return cached.names;
    checkedAt = now;
    let st: { dev: number; ino: number; size: number; mtimeMs: number };
    try {
      st = statSync(path);
    } catch {
      cached = undefined;
      return NO_NAMES;
    }
    const { dev, ino, size, mtimeMs } = st;
    if (cached && cached.dev === dev && cached.ino === ino && cached.size === size && cached.mtimeMs === mtimeMs) {
      return cached.names;
    }
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return NO_NAMES;
    }
    // Keyed by the stat taken BEFORE reading: if the file changes in between, the next
    // check sees a newer stat and reads again, so a stale parse never sticks.
    cached = { dev, ino, size, mtimeMs, names: parse(text) };
    return cached.names;
  };
}

function cancelled(pid: number): ApiError {
  return new ApiError(Code.CANCELLED, `unix: attestation of process ${pid} cancelled`);
}

/** Maps a failed read under /proc/<pid>: gone → NOT_FOUND, aborted → CANCELLED, else INTERNAL. */
function procError(err: unknown, pid: number, signal: AbortSignal, what: string): ApiError {
  if (signal.aborted) return cancelled(pid);
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // ENOENT: /proc/<pid> is gone (or the process is a zombie without an exe); ESRCH: it
  // exited while we were reading.
  if (code === 'ENOENT' || code === 'ESRCH') return new ApiError(Code.NOT_FOUND, `unix: process ${pid} not found`);
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(Code.INTERNAL, `unix: ${what} of process ${pid}: ${message}`);
}
