/**
 * `-output json` for both CLIs, as SPIRE's cliprinter prints it: the response
 * message in protojson form (proto field names, unpopulated fields included, 64-bit integers as
 * strings, enums by name, bytes in base64), with nulls removed and object keys sorted (it goes
 * through a Go map), compact, HTML characters escaped, one line.
 */
import { ApiError, Code } from './errors.ts';
import { messageType } from './proto.ts';
import type { FlagSpec, FlagValues } from './flags.ts';

/** The `-output` flag: `pretty` (default) or `json`. */
export const outputFlag: FlagSpec = { kind: 'string', usage: 'Desired output format (pretty, json); default: pretty.', default: 'pretty' };

/** Whether `-output json` was given; INVALID_ARGUMENT for an unknown format. */
export function wantsJson(v: FlagValues): boolean {
  const format = (v.strings.get('output') ?? 'pretty').toLowerCase();
  if (format === 'json') return true;
  if (format === 'pretty' || format === 'prettyprint') return false;
  throw new ApiError(Code.INVALID_ARGUMENT, `invalid value "${format}" for flag -output: unknown format option: "${format}"`);
}

function sortedWithoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.filter((v) => v !== null && v !== undefined).map(sortedWithoutNulls);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== null && v !== undefined) out[key] = sortedWithoutNulls(v);
    }
    return out;
  }
  return value;
}

/** A message in protojson form, as an object (before null removal and key sorting). */
export function protoJsonObject(fullName: string, message: object): Record<string, unknown> {
  const type = messageType(fullName);
  return type.toObject(type.fromObject(message), { longs: String, enums: String, bytes: String, defaults: true, arrays: true });
}

/** Values (protojson objects or plain JSON) as SPIRE's printer writes them: nulls dropped, keys sorted, compact, HTML-escaped, one line. */
export function goJsonLine(value: unknown): string {
  // Go's encoding/json escapes these by default.
  const text = JSON.stringify(sortedWithoutNulls(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `${text}\n`;
}

/** `message` (a decoded response of type `fullName`) as SPIRE's `-output json` line. */
export function protoJsonLine(fullName: string, message: object): string {
  return goJsonLine(protoJsonObject(fullName, message));
}
