/**
 * glibc malloc settings for the agent process (`spiffe-agent run`), applied at start next to
 * the V8 heap flags (heap-flags.ts), before the agent's modules allocate.
 *
 * Why: glibc adapts its mmap threshold upwards each time a large block is freed (up to
 * 32 MiB on 64-bit), so after the first few large buffers (sync responses, encoded SVID
 * responses, TLS records) every later one comes from the arenas, where freed space stays
 * resident until malloc_trim and fragments in between. A fixed threshold keeps blocks of
 * {@link MMAP_THRESHOLD_BYTES} and more in their own mappings, returned to the kernel on
 * free; a fixed trim threshold lets free() give back the top of the heap at once.
 * Measured (agent from source, 1,001 entries, sync every second, RssAnon every 0.5 s over
 * 20 s): idle 54.5 → 46.0 MiB; see bench/RESULTS.md for the production layout.
 *
 * `mallopt` is glibc's; where it is absent (musl) nothing is changed.
 */
import koffi from 'koffi';

/** glibc's mallopt parameter numbers (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

/** Blocks of this size and more get their own mapping (glibc's initial default, kept fixed). */
export const MMAP_THRESHOLD_BYTES = 128 * 1024;
/** Free space at the top of the heap beyond this is returned by free() itself. */
export const TRIM_THRESHOLD_BYTES = 128 * 1024;

/** Applies the settings; returns whether the C library took them (false on musl). */
export function applyMallocSettings(): boolean {
  let mallopt: (param: number, value: number) => number;
  try {
    mallopt = koffi.load(null).func('int mallopt(int, int)') as typeof mallopt;
  } catch {
    return false;
  }
  // Setting either threshold explicitly also turns off glibc's dynamic adjustment of both.
  return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) === 1 && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) === 1;
}
