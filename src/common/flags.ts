/**
 * Go-style command-line flags, as spire-server and spire-agent spell them:
 * `-name value`, `-name=value`, `--name value`, boolean `-name` or `-name=false`,
 * and repeatable list flags (`-selector a -selector b`). Pure: argv in, values out.
 */
import type { Parsed } from './spiffe-id.ts';

export type FlagKind = 'string' | 'bool' | 'int' | 'list';

export interface FlagSpec {
  kind: FlagKind;
  usage: string;
  default?: string | boolean | number;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** Parsed values: strings, booleans, integers, or string lists, keyed by flag name. */
export interface FlagValues {
  strings: Map<string, string>;
  bools: Map<string, boolean>;
  ints: Map<string, number>;
  lists: Map<string, string[]>;
  /** Arguments after the flags. */
  rest: string[];
}

/** Parses argv against the specs; unknown flags and missing values are errors. */
export function parseFlags(argv: readonly string[], specs: FlagSpecs): Parsed<FlagValues> {
  const out: FlagValues = { strings: new Map(), bools: new Map(), ints: new Map(), lists: new Map(), rest: [] };
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.default === undefined) continue;
    if (spec.kind === 'string') out.strings.set(name, String(spec.default));
    if (spec.kind === 'bool') out.bools.set(name, Boolean(spec.default));
    if (spec.kind === 'int') out.ints.set(name, Number(spec.default));
  }
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.rest.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      out.rest.push(...argv.slice(i));
      break;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const spec = specs[name];
    if (spec === undefined) {
      const known = Object.keys(specs).map((k) => `-${k}`).join(', ');
      return { ok: false, error: `flag provided but not defined: -${name} (flags: ${known === '' ? 'none' : known})` };
    }
    let value: string | undefined = eq === -1 ? undefined : body.slice(eq + 1);
    if (spec.kind === 'bool') {
      if (value === undefined) out.bools.set(name, true);
      else if (value === 'true' || value === 'false') out.bools.set(name, value === 'true');
      else return { ok: false, error: `invalid boolean value "${value}" for flag -${name}` };
      i++;
      continue;
    }
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined) return { ok: false, error: `flag needs an argument: -${name}` };
      i++;
    }
    i++;
    if (spec.kind === 'string') out.strings.set(name, value);
    else if (spec.kind === 'list') out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
    else {
      if (!/^-?\d+$/.test(value)) return { ok: false, error: `invalid integer value "${value}" for flag -${name}` };
      out.ints.set(name, Number(value));
    }
  }
  return { ok: true, value: out };
}

/** Formats the flag list for a usage message. */
export function flagUsage(specs: FlagSpecs): string {
  return Object.entries(specs)
    .map(([name, spec]) => {
      const arg = spec.kind === 'bool' ? '' : spec.kind === 'int' ? ' int' : ' string';
      const def = spec.default === undefined || spec.default === '' ? '' : ` (default ${JSON.stringify(spec.default)})`;
      return `  -${name}${arg}\n        ${spec.usage}${def}`;
    })
    .join('\n');
}
