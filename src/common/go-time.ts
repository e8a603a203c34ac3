/**
 * Times as Go's `time.Time.String()` prints them (layout `2006-01-02 15:04:05 -0700 MST`),
 * which is what spire-server and spire-agent CLIs print and what scripts written for them parse.
 */

/** Go's numeric zone abbreviation (tzdata style) for an offset in minutes: "+0530", "-03". */
function numericAbbreviation(offsetMinutes: number): string {
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = abs % 60;
  return mm === 0 ? `${sign}${hh}` : `${sign}${hh}${String(mm).padStart(2, '0')}`;
}

/** English locales whose ICU data name different zones: each knows its own region's letters. */
const ABBREVIATION_LOCALES = ['en-US', 'en-GB', 'en-AU', 'en-IN', 'en-NZ', 'en-CA'];

/**
 * Formatters by locale, zone and zone-name style. Building one costs tens of microseconds and
 * a listing formats a time per line, so each is built once per process (`undefined`: the local
 * zone as it was when first used).
 */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(locale: string, timeZone: string | undefined, timeZoneName: 'short' | 'longOffset'): Intl.DateTimeFormat {
  const key = `${locale}|${timeZone ?? ''}|${timeZoneName}`;
  let f = formatters.get(key);
  if (f === undefined) {
    f = new Intl.DateTimeFormat(locale, {
      ...(timeZone === undefined ? {} : { timeZone }),
      timeZoneName,
      ...(timeZoneName === 'longOffset'
        ? { hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }
        : {}),
    });
    formatters.set(key, f);
  }
  return f;
}

/** The zone's letters ("EST", "CET", "UTC"), or undefined where ICU knows it only by offset. */
function zoneAbbreviation(date: Date, timeZone: string | undefined, offsetMinutes: number): string | undefined {
  for (const locale of ABBREVIATION_LOCALES) {
    const name = formatter(locale, timeZone, 'short')
      .formatToParts(date)
      .find((p) => p.type === 'timeZoneName')?.value;
    // ICU says "GMT" for any zone it cannot name in a locale; only a zero offset is really GMT.
    if (name !== undefined && /^[A-Z]{2,5}$/.test(name) && !(name === 'GMT' && offsetMinutes !== 0)) return name;
  }
  return undefined;
}

/**
 * Formats `ms` (Unix milliseconds, truncated to seconds) as Go's `time.Time.String()` does in
 * `timeZone` (an IANA name; default: the process's local zone, as Go's `time.Local`).
 * Zone letters come from ICU's English locales ("EST", "CET", "IST", "UTC"), as tzdata (Go's
 * source) names them for most zones; a zone ICU names only by offset gets tzdata's numeric
 * form ("-03"), which is also Go's for such zones.
 */
export function formatGoTime(ms: number, timeZone?: string): string {
  const date = new Date(Math.floor(ms / 1000) * 1000);
  const parts = formatter('en-US', timeZone, 'longOffset').formatToParts(date);
  const part = (type: Intl.DateTimeFormatPartTypes): string => parts.find((p) => p.type === type)?.value ?? '';
  // "GMT" for a zero offset, else "GMT+05:30" / "GMT-03:00".
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(part('timeZoneName'));
  const offsetMinutes = m?.[1] === undefined ? 0 : (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  const abs = Math.abs(offsetMinutes);
  const offset = `${offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}${String(abs % 60).padStart(2, '0')}`;
  const abbreviation = zoneAbbreviation(date, timeZone, offsetMinutes) ?? numericAbbreviation(offsetMinutes);
  return `${part('year')}-${part('month')}-${part('day')} ${part('hour')}:${part('minute')}:${part('second')} ${offset} ${abbreviation}`;
}

/** `formatGoTime` in UTC: what Go prints for `t.UTC()` and for times parsed from certificates. */
export function formatGoTimeUtc(ms: number): string {
  return formatGoTime(ms, 'UTC');
}
