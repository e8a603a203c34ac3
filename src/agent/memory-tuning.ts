/**
 * Keeps a long-running agent's memory flat when callers churn connections.
 *
 * Why: every Workload API connection and stream allocates short-lived objects (HTTP/2
 * session state, buffers, promises). Under churn (new connection → stream → cancel, as
 * one-shot clients and hostile pods do), V8's default heuristics grow the young generation to
 * 32 MiB per semi-space and let the old generation grow to several times its live size, and
 * never give the pages back once the churn stops; glibc keeps the native side's freed memory
 * in its arenas. Measured (bench/churn-soak.ts, 4 clients): RssAnon +180 MiB over idle, live
 * heap unchanged. With the settings below, RssAnon returns to its idle figure within seconds
 * of the churn ending, at the same CPU per connection.
 *
 * - `--semi-space-growth-factor=1`: the young generation keeps its initial size (a
 *   scavenge of a small space is cheap; the agent's allocations are short-lived).
 * - `--heap-growing-percent=50`: the old generation may grow to 1.5× its live size before
 *   the next major GC, instead of up to 4×.
 * - `malloc_trim(0)` every {@link TRIM_INTERVAL_MS}: returns free pages of glibc's arenas to
 *   the kernel (about 0.25 ms; nothing on musl, where the symbol is absent).
 *
 * Both V8 flags are plain numbers V8 reads at each GC decision, so they take effect when set
 * at run time (they are not accepted in NODE_OPTIONS). `spiffe-agent run` sets them before it
 * loads the agent's modules (heap-flags.ts says why); setting them again here is harmless.
 */
import koffi from 'koffi';
import { applyHeapFlags } from './heap-flags.ts';
import type { Logger } from '../common/logger.ts';

export { HEAP_FLAGS } from './heap-flags.ts';

/** How often freed native memory is handed back to the kernel. */
export const TRIM_INTERVAL_MS = 10_000;

type MallocTrim = (pad: number) => number;

/** glibc's malloc_trim, or undefined where the C library has none (musl). */
function loadMallocTrim(): MallocTrim | undefined {
  try {
    return koffi.load(null).func('int malloc_trim(size_t)') as MallocTrim;
  } catch {
    return undefined;
  }
}

/** What {@link tuneProcessMemory} started. */
export interface MemoryTuning {
  /** Whether freed native memory is returned periodically (glibc). */
  readonly trimming: boolean;
  stop(): void;
}

/**
 * Applies the heap settings to this process and starts returning freed native memory
 * periodically. For the agent process only (`spiffe-agent run`): the settings are global.
 */
export function tuneProcessMemory(logger: Logger): MemoryTuning {
  applyHeapFlags();
  const trim = loadMallocTrim();
  if (trim === undefined) {
    logger.debug('malloc_trim is not available (not glibc): freed native memory is returned by the allocator alone');
    return { trimming: false, stop: () => {} };
  }
  const timer = setInterval(() => trim(0), TRIM_INTERVAL_MS);
  timer.unref();
  return { trimming: true, stop: () => clearInterval(timer) };
}
