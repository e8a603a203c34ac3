/**
 * Durations for the agent CLI as Go prints them ("1.5s", "250ms"); times are in
 * common/go-time.ts.
 */

function trimFraction(value: number, digits: number): string {
  return value.toFixed(digits).replace(/\.?0+$/, '');
}

/** Formats an elapsed time the way Go's `time.Duration.String` does, from milliseconds ("0s", "3ms", "1.5s", "1m30s"). */
export function formatElapsed(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  const abs = Math.abs(ms);
  if (abs < 0.001) return `${sign}${Math.round(abs * 1e6)}ns`;
  if (abs < 1) return `${sign}${trimFraction(abs * 1000, 3)}µs`;
  if (abs < 1000) return `${sign}${trimFraction(abs, 6)}ms`;
  const h = Math.floor(abs / 3_600_000);
  const m = Math.floor((abs % 3_600_000) / 60_000);
  const s = (abs % 60_000) / 1000;
  return `${sign}${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${trimFraction(s, 9)}s`;
}
