/**
 * The workload SVID cache on disk, `<data_dir>/workload-cache.bin` (format: manager/cache-file.ts),
 * so that a restarted agent serves its workloads at once, even while the server is down.
 *
 * - Written like the agent key (storage.ts): atomically (temp file + fsync + rename + directory
 *   fsync) with mode 0600. A kill -9 at any moment leaves the previous or the new file, and a
 *   file that is truncated, corrupt, of another version, trust domain or agent identity is
 *   ignored with a log line and removed.
 * - Written after changes, never per workload call: a change marks the writer dirty (O(1));
 *   one write follows a short delay that gathers a sync and its minting batches, and writes
 *   are at least `minIntervalMs` apart, whatever the churn. The file is encoded from the
 *   manager's live records when written; no second copy is kept in memory.
 * - With `KeyManager "memory"` nothing is written, and a file left by an earlier run is removed.
 * - JWT-SVIDs are not persisted: they are short-lived bearer tokens minted on demand.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../common/logger.ts';
import type { Clock } from '../common/clock.ts';
import { atomicTempPrefix, readFileIfExists, writeFileAtomic } from '../common/atomic-file.ts';
import { readCertificate } from '../common/cert-reader.ts';
import { decodeCacheFile, encodeCacheFile } from './manager/cache-file.ts';
import { fileContentOf, restoreContent, type RestoredContent } from './manager/cache-restore.ts';
import type { CacheManager, PersistableCache } from './manager/cache-manager.ts';
import { loadState } from './storage.ts';

/** The cache file's name inside `data_dir`. */
export const WORKLOAD_CACHE_FILE = 'workload-cache.bin';

/** The cache file's path. */
export function workloadCacheFile(dataDir: string): string {
  return join(dataDir, WORKLOAD_CACHE_FILE);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Removes temporary files a killed writer left behind (they may hold keys). */
async function removeStrayTempFiles(dataDir: string): Promise<void> {
  const prefix = atomicTempPrefix(WORKLOAD_CACHE_FILE);
  let names: string[];
  try {
    names = await readdir(dataDir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => rm(join(dataDir, n), { force: true }).catch(() => undefined)));
}

/** The stored agent identity the cache must belong to: its SPIFFE ID and server bundle. */
export async function storedAgentIdentity(dataDir: string): Promise<{ spiffeId: string; roots: Buffer[] } | undefined> {
  try {
    const state = await loadState(dataDir);
    const leaf = state?.svid[0];
    if (state === undefined || leaf === undefined) return undefined;
    const spiffeId = readCertificate(leaf).uris[0];
    return spiffeId === undefined ? undefined : { spiffeId, roots: state.bundle };
  } catch {
    return undefined; // the lifecycle reports an unreadable state file itself
  }
}

export interface LoadWorkloadCacheOptions {
  dataDir: string;
  trustDomain: string;
  /** The stored agent identity, from {@link storedAgentIdentity}. */
  agent: { spiffeId: string; roots: readonly Buffer[] } | undefined;
  now: number;
  logger: Logger;
}

/**
 * Reads the cache file and keeps what may be served. Never throws: a file that cannot be
 * used is logged and removed, and undefined is returned.
 */
export async function loadWorkloadCache(opts: LoadWorkloadCacheOptions): Promise<RestoredContent | undefined> {
  const path = workloadCacheFile(opts.dataDir);
  await removeStrayTempFiles(opts.dataDir);
  let raw: Buffer | undefined;
  try {
    raw = await readFileIfExists(path);
  } catch (err) {
    opts.logger.warn({ path, error: message(err) }, 'cannot read the workload cache; starting without it');
    return undefined;
  }
  if (raw === undefined) return undefined;
  const reject = async (reason: string): Promise<undefined> => {
    opts.logger.warn({ path, reason }, 'ignoring the workload cache file; it will be rewritten after the first sync');
    await rm(path, { force: true }).catch(() => undefined);
    return undefined;
  };
  const decoded = decodeCacheFile(raw);
  if (!decoded.ok) return reject(decoded.error);
  if (opts.agent === undefined) return reject('there is no stored agent identity it could belong to');
  const restored = restoreContent(decoded.value, {
    trustDomain: opts.trustDomain,
    agentId: opts.agent.spiffeId,
    roots: opts.agent.roots,
    now: opts.now,
  });
  if (!restored.ok) return reject(restored.error);
  const { svids, skipped } = restored.value;
  const fields = { path, svids: svids.length, bytes: raw.length, expired: skipped.expired, unverified: skipped.unverified, malformed: skipped.malformed };
  if (svids.length === 0) {
    opts.logger.info(fields, 'workload cache holds no servable X509-SVID; waiting for the server');
    return undefined;
  }
  opts.logger.info({ ...fields, written_at: new Date(decoded.value.writtenAt).toISOString() }, 'serving the restored workload cache until the first sync');
  return restored.value;
}

/** Removes the cache file and stray temporary files (KeyManager "memory", or a banned agent). */
export async function discardWorkloadCache(dataDir: string, logger: Logger): Promise<void> {
  const path = workloadCacheFile(dataDir);
  await removeStrayTempFiles(dataDir);
  try {
    if ((await readFileIfExists(path)) === undefined) return;
    await rm(path, { force: true });
    logger.info({ path }, 'removed the workload cache file');
  } catch (err) {
    logger.warn({ path, error: message(err) }, 'cannot remove the workload cache file');
  }
}

export interface WorkloadCacheWriterOptions {
  dataDir: string;
  trustDomain: string;
  /** The current agent SPIFFE ID; nothing is written while there is none. */
  agentId: () => string | undefined;
  /** The manager's current state (CacheManager.persistable). */
  source: () => PersistableCache | undefined;
  logger: Logger;
  clock: Clock;
  /** Wait after the first change before writing. Default 1 s. */
  delayMs?: number;
  /** Least time between the starts of two writes. Default 5 s. */
  minIntervalMs?: number;
}

/** Writes the cache file after changes, coalesced (see file comment). */
export class WorkloadCacheWriter {
  readonly #o: WorkloadCacheWriterOptions;
  readonly #path: string;
  readonly #delayMs: number;
  readonly #minIntervalMs: number;
  #dirty = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #lastWriteAt = -Infinity;

  constructor(opts: WorkloadCacheWriterOptions) {
    this.#o = opts;
    this.#path = workloadCacheFile(opts.dataDir);
    this.#delayMs = opts.delayMs ?? 1_000;
    this.#minIntervalMs = opts.minIntervalMs ?? 5_000;
  }

  /** Marks the cache changed; a write follows later. Cheap enough for every sync and mint. */
  changed(): void {
    if (this.#closed) return;
    this.#dirty = true;
    if (this.#timer === undefined && this.#writing === undefined) this.#arm();
  }

  #arm(): void {
    const wait = Math.max(this.#delayMs, this.#lastWriteAt + this.#minIntervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startWrite();
    }, wait);
    // A pending write never keeps the process alive; stop() flushes.
    this.#timer.unref();
  }

  #startWrite(): Promise<void> {
    if (this.#writing !== undefined) return this.#writing;
    if (!this.#dirty || this.#closed) return Promise.resolve();
    this.#writing = this.#write().finally(() => {
      this.#writing = undefined;
      if (this.#dirty && !this.#closed && this.#timer === undefined) this.#arm();
    });
    return this.#writing;
  }

  async #write(): Promise<void> {
    const agentId = this.#o.agentId();
    const cache = this.#o.source();
    // Nothing to write yet (no identity, or nothing synced); the next change tries again.
    this.#dirty = false;
    if (agentId === undefined || cache === undefined) return;
    this.#lastWriteAt = performance.now();
    const started = performance.now();
    try {
      const bytes = encodeCacheFile(fileContentOf(cache, { trustDomain: this.#o.trustDomain, agentId, now: this.#o.clock.now() }));
      const encodedMs = performance.now() - started;
      await writeFileAtomic(this.#path, bytes, { mode: 0o600 });
      this.#o.logger.debug(
        { svids: cache.svids.length, bytes: bytes.length, encode_ms: Number(encodedMs.toFixed(2)), total_ms: Number((performance.now() - started).toFixed(2)) },
        'workload cache saved',
      );
    } catch (err) {
      this.#dirty = true; // retried after minIntervalMs
      this.#o.logger.warn({ path: this.#path, error: message(err) }, 'cannot write the workload cache; will retry');
    }
  }

  /** Writes now if anything changed since the last write (waits for a write in flight first). */
  async flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    await this.#writing;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#startWrite();
  }

  /** Stops writing for good (also flush()): cancels a pending write, waits for one in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#writing;
  }
}

export interface OpenWorkloadCacheOptions {
  dataDir: string;
  trustDomain: string;
  keyManager: 'disk' | 'memory';
  manager: Pick<CacheManager, 'restore' | 'persistable'>;
  /** The lifecycle's current agent SPIFFE ID (undefined while loading or attesting). */
  agentId: () => string | undefined;
  logger: Logger;
  clock: Clock;
}

/**
 * At start: with the `disk` key manager, restores the cache file into the manager (served
 * until the first sync, while the agent keeps the identity it was written under) and
 * returns the writer; with `memory`, removes any cache file and returns undefined.
 */
export async function openWorkloadCache(opts: OpenWorkloadCacheOptions): Promise<WorkloadCacheWriter | undefined> {
  if (opts.keyManager === 'memory') {
    await discardWorkloadCache(opts.dataDir, opts.logger);
    return undefined;
  }
  const agent = await storedAgentIdentity(opts.dataDir);
  const restored = await loadWorkloadCache({ dataDir: opts.dataDir, trustDomain: opts.trustDomain, agent, now: opts.clock.now(), logger: opts.logger });
  if (restored !== undefined && agent !== undefined) {
    opts.manager.restore({
      ...restored,
      stillOwned: () => {
        const current = opts.agentId();
        return current === undefined || current === agent.spiffeId;
      },
    });
  }
  return new WorkloadCacheWriter({
    dataDir: opts.dataDir,
    trustDomain: opts.trustDomain,
    agentId: opts.agentId,
    source: () => opts.manager.persistable(),
    logger: opts.logger,
    clock: opts.clock,
  });
}
