/**
 * Human-readable times and durations for the agent CLI: RFC 3339 timestamps, Go-style
 * elapsed durations ("1.5s", "250ms") and coarse remaining lifetimes ("expires in 59m").
 */

/** An RFC 3339 UTC timestamp, without fractional seconds when there are none. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
}

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

/** A coarse duration for people: "3d4h", "2h5m", "59m", "42s". Truncates; never negative. */
export function formatApproxDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d${h > 0 ? `${h}h` : ''}`;
  if (h > 0) return `${h}h${m > 0 ? `${m}m` : ''}`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

/** "expires in 59m", or "expired 5m ago" once `notAfter` has passed. */
export function formatExpiry(notAfterMs: number, nowMs: number): string {
  const left = notAfterMs - nowMs;
  return left >= 0 ? `expires in ${formatApproxDuration(left)}` : `expired ${formatApproxDuration(-left)} ago`;
}
