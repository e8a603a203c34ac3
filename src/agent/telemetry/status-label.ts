/**
 * gRPC status codes as metric label values, spelled as SPIRE's `status` label spells them
 * (Go's `codes.Code.String()`: "OK", "PermissionDenied", "Unavailable"…), so dashboards
 * built for SPIRE read ours unchanged. The set is closed (17 values), which bounds every
 * status-labelled series.
 */
import { Code } from '../../common/errors.ts';
import { GO_CODE_NAMES as NAMES, goCodeNameOf } from '../../common/code-names.ts';
import type { CallRecorder, StatusCounter } from '../../common/recorders.ts';
import type { CounterCell, HistogramCell } from './cells.ts';


/** The label value of a status code; anything outside the gRPC range is "Unknown". */
export function statusLabel(code: Code): string {
  return goCodeNameOf(code) ?? 'Unknown';
}

/** Every status label value, in code order. */
export const STATUS_LABELS: readonly string[] = NAMES;

function slot(code: Code): number {
  return Number.isInteger(code) && code >= 0 && code < NAMES.length ? code : Code.UNKNOWN;
}

/**
 * A StatusCounter over per-code counter series: `child(statusLabel)` is called once per code
 * actually seen, then the series is reused (no lookup or allocation afterwards).
 */
export function statusCounter(child: (status: string) => CounterCell): StatusCounter {
  const cells = new Array<CounterCell | undefined>(NAMES.length);
  return {
    inc(code) {
      const i = slot(code);
      (cells[i] ??= child(NAMES[i] as string)).inc();
    },
  };
}

/** A CallRecorder over per-code histogram series, bound on first use of each code. */
export function callRecorder(child: (status: string) => HistogramCell): CallRecorder {
  const cells = new Array<HistogramCell | undefined>(NAMES.length);
  return {
    record(code, seconds) {
      const i = slot(code);
      (cells[i] ??= child(NAMES[i] as string)).observe(seconds);
    },
  };
}
