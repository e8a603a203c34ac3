/**
 * The storage behind each metric series: plain numbers updated in place.
 *
 * Why not prom-client's own children: even a pre-bound prom-client child builds a label
 * hash string and a wrapper object on every `inc`/`observe` (about 0.2–0.3 µs each). The
 * Workload API records several values per call, so the hot path writes into these cells
 * instead (a few nanoseconds, no allocation) and prom-client reads them when scraped.
 */
import type { EventCounter, ValueRecorder } from '../../common/recorders.ts';

/** One counter series. */
export class CounterCell implements EventCounter {
  /** The running total. */
  value = 0;

  inc(by = 1): void {
    this.value += by;
  }
}

/** One histogram series over fixed upper bounds (ascending, +Inf implied). */
export class HistogramCell implements ValueRecorder {
  readonly #bounds: readonly number[];
  /** Per-bucket (not cumulative) counts; the last slot is the +Inf bucket. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    // NaN and negative durations (a clock step) are not worth a series' integrity.
    if (!(value >= 0)) return;
    const bounds = this.#bounds;
    let i = 0;
    // Linear scan: about 20 bounds, and most observations land in the first few.
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }

  /** Cumulative counts per bound, as Prometheus exposes them (the last is +Inf). */
  cumulative(): number[] {
    const out = new Array<number>(this.counts.length);
    let acc = 0;
    for (let i = 0; i < this.counts.length; i++) {
      acc += this.counts[i] as number;
      out[i] = acc;
    }
    return out;
  }
}
