/**
 * Pure parsers of `/etc/passwd` and `/etc/group` text into ID → name maps.
 *
 * They follow the rules of Go's `os/user` file lookup, which SPIRE's unix attestor uses:
 * - each line is trimmed; blank lines and lines starting with `#` are skipped;
 * - a passwd line needs at least 7 colon-separated fields, a group line at least 4;
 * - names that are empty or start with `+` or `-` (NIS compat entries) never match;
 * - the ID must be written canonically (`1000`, not `01000`): Go compares it as a string;
 * - a passwd line whose GID field is not an integer is skipped;
 * - the first line for an ID wins.
 */

/** ID → name, e.g. `0 → "root"`. */
export type IdNameMap = ReadonlyMap<number, string>;

const CANONICAL_ID = /^(?:0|[1-9][0-9]{0,9})$/;
const INTEGER = /^[+-]?[0-9]+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Parses `/etc/passwd` text into UID → user name. Lines that do not parse are skipped. */
export function parsePasswd(text: string): IdNameMap {
  return parseColonFile(text, 7, (parts) => isGoInt(parts[3]));
}

/** Parses `/etc/group` text into GID → group name. Lines that do not parse are skipped. */
export function parseGroup(text: string): IdNameMap {
  return parseColonFile(text, 4, () => true);
}

function parseColonFile(text: string, minFields: number, accept: (parts: string[]) => boolean): Map<number, string> {
  const names = new Map<number, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parts = line.split(':');
    if (parts.length < minFields) continue;
    const name = parts[0] ?? '';
    if (name === '' || name.startsWith('+') || name.startsWith('-')) continue;
    const idText = parts[2] ?? '';
    if (!CANONICAL_ID.test(idText) || !accept(parts)) continue;
    const id = Number(idText);
    if (id > 0xffff_ffff || names.has(id)) continue;
    names.set(id, name);
  }
  return names;
}

/** Whether Go's `strconv.Atoi` accepts the text (an optionally signed int64). */
function isGoInt(text: string | undefined): boolean {
  if (text === undefined || !INTEGER.test(text)) return false;
  const value = BigInt(text);
  return value >= INT64_MIN && value <= INT64_MAX;
}
