/**
 * The recording contracts components use for metrics, independent of any metrics library.
 *
 * A component declares the narrow set of recorders it needs (e.g. `WorkloadApiMetrics`),
 * receives them pre-bound to their labels, and calls them on its hot paths: a call is a
 * number update, never a label lookup or an allocation. The agent's telemetry module
 * implements them over prom-client; when telemetry is off, components get the no-ops below.
 */
import type { Code } from './errors.ts';

/** Counts events. */
export interface EventCounter {
  /** Adds `by` (default 1). */
  inc(by?: number): void;
}

/** Records a distribution of values (durations in seconds, sizes). */
export interface ValueRecorder {
  observe(value: number): void;
}

/** Counts events by gRPC status code (SPIRE's `status` label). */
export interface StatusCounter {
  inc(code: Code): void;
}

/** A SPIRE-style call counter: how long each call took, by final gRPC status code. */
export interface CallRecorder {
  record(code: Code, seconds: number): void;
}

/** An EventCounter that does nothing. */
export const NOOP_COUNTER: EventCounter = { inc() {} };
/** A ValueRecorder that does nothing. */
export const NOOP_RECORDER: ValueRecorder = { observe() {} };
/** A StatusCounter that does nothing. */
export const NOOP_STATUS_COUNTER: StatusCounter = { inc() {} };
/** A CallRecorder that does nothing. */
export const NOOP_CALL_RECORDER: CallRecorder = { record() {} };

/** Seconds elapsed since `startedMs`, a `performance.now()` reading. */
export function secondsSince(startedMs: number): number {
  return (performance.now() - startedMs) / 1000;
}
