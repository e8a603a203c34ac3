/**
 * Go-style durations ("90s", "1h30m", "500ms") as SPIRE's config files write them.
 * Returns milliseconds, or an error string naming what is wrong.
 */
import type { Parsed } from './spiffe-id.ts';

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;

/** Parses a duration string such as "1h30m"; a bare number means seconds. */
export function parseDuration(text: string): Parsed<number> {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, error: 'duration is empty' };
  if (/^\d+$/.test(trimmed)) return { ok: true, value: Number(trimmed) * 1000 };
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < trimmed.length) {
    const start = PART.lastIndex;
    const match = PART.exec(trimmed);
    if (match === null || match.index !== start) {
      return { ok: false, error: `"${text}" is not a duration (examples: "90s", "1h30m", "500ms")` };
    }
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
  }
  return { ok: true, value: Math.round(total) };
}

/** Formats milliseconds the way Go prints durations, for logs and CLI output. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}
