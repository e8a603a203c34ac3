/**
 * Lets one event per key through per interval and counts the others, so that log lines a
 * caller can provoke stay bounded (a polling client, a flood past the limits, a client that
 * retries a response too large for it). Memory is bounded too: at most `maxKeys` keys are
 * remembered, expired ones pruned first, then the oldest.
 */
import type { Clock } from './clock.ts';

/** The outcome for one event: whether to act on it, and how many were held back since the last one let through. */
export type RateDecision = { readonly admitted: true; readonly suppressed: number } | { readonly admitted: false };

/** Options of {@link KeyedRateLimit}. */
export interface KeyedRateLimitOptions {
  readonly intervalMs: number;
  readonly clock: Clock;
  /** Default 4,096. */
  readonly maxKeys?: number;
}

/** One event per key per interval. */
export class KeyedRateLimit {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #maxKeys: number;
  /** Last admitted time and events held back since, by key (insertion order = admission order). */
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(opts: KeyedRateLimitOptions) {
    this.#intervalMs = opts.intervalMs;
    this.#clock = opts.clock;
    this.#maxKeys = opts.maxKeys ?? 4_096;
  }

  /** Decides for one event of `key`. */
  admit(key: string): RateDecision {
    const now = this.#clock.now();
    const seen = this.#last.get(key);
    if (seen !== undefined && now - seen.at < this.#intervalMs) {
      seen.suppressed += 1;
      return { admitted: false };
    }
    this.#last.delete(key);
    if (this.#last.size >= this.#maxKeys) this.#prune(now);
    this.#last.set(key, { at: now, suppressed: 0 });
    return { admitted: true, suppressed: seen?.suppressed ?? 0 };
  }

  #prune(now: number): void {
    for (const [key, value] of this.#last) {
      if (now - value.at >= this.#intervalMs) this.#last.delete(key);
    }
    for (const key of this.#last.keys()) {
      if (this.#last.size < this.#maxKeys) break;
      this.#last.delete(key);
    }
  }
}
