/**
 * Typed reads from a config tree. Every error names the full field path and the fix,
 * and unknown keys are rejected with the nearest known key as a suggestion.
 */
import { ApiError, Code } from './errors.ts';
import type { ConfigTree, ConfigValue } from './config-file.ts';
import { parseDuration } from './duration.ts';

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
export function nearestKey(key: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function describe(value: ConfigValue | undefined): string {
  return JSON.stringify(value);
}

/** Reads one block; call `done()` after reading every field to reject unknown keys. */
export class ConfigReader {
  readonly path: string;
  readonly #tree: ConfigTree;
  readonly #seen = new Set<string>();

  constructor(tree: ConfigTree, path: string) {
    this.#tree = tree;
    this.path = path;
  }

  #field(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  fail(key: string, message: string): never {
    throw new ApiError(Code.INVALID_ARGUMENT, `config: ${this.#field(key)}: ${message}`);
  }

  has(key: string): boolean {
    return this.#tree[key] !== undefined && this.#tree[key] !== null;
  }

  #get(key: string): ConfigValue | undefined {
    this.#seen.add(key);
    const v = this.#tree[key];
    return v === null ? undefined : v;
  }

  string(key: string, fallback?: string): string {
    const v = this.#get(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is required');
      return fallback;
    }
    if (typeof v === 'number') return String(v);
    if (typeof v !== 'string') this.fail(key, `must be a string (got ${describe(v)})`);
    return v;
  }

  optionalString(key: string): string | undefined {
    if (this.has(key)) return this.string(key);
    this.#seen.add(key);
    return undefined;
  }

  int(key: string, fallback: number, range: { min?: number; max?: number } = {}): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) this.fail(key, `must be an integer (got ${describe(v)})`);
    if ((range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
      this.fail(key, `must be between ${range.min ?? '-∞'} and ${range.max ?? '∞'} (got ${n})`);
    }
    return n;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (v === 'true') return true;
    if (v === 'false') return false;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false (got ${describe(v)})`);
    return v;
  }

  /** A Go-style duration ("1h", "90s") or a number of seconds; returns milliseconds. */
  duration(key: string, fallbackMs: number): number {
    const v = this.#get(key);
    if (v === undefined) return fallbackMs;
    if (typeof v === 'number') return v * 1000;
    if (typeof v !== 'string') this.fail(key, `must be a duration such as "1h" (got ${describe(v)})`);
    const parsed = parseDuration(v);
    if (!parsed.ok) this.fail(key, parsed.error);
    if (parsed.value <= 0) this.fail(key, 'must be greater than zero');
    return parsed.value;
  }

  stringList(key: string): string[] {
    const v = this.#get(key);
    if (v === undefined) return [];
    if (typeof v === 'string') return [v];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(key, `must be a list of strings (got ${describe(v)})`);
    return v as string[];
  }

  /** A nested block; absent blocks read as empty. */
  block(key: string): ConfigReader {
    const v = this.#get(key);
    if (v === undefined) return new ConfigReader({}, this.#field(key));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(key, 'must be a block');
    return new ConfigReader(v, this.#field(key));
  }

  /** Labelled blocks (`NodeAttestor "join_token" {…}`) as label → reader. */
  labelled(key: string): Map<string, ConfigReader> {
    const block = this.block(key);
    const out = new Map<string, ConfigReader>();
    for (const label of block.keys()) out.set(label, block.block(label));
    return out;
  }

  keys(): string[] {
    return Object.keys(this.#tree);
  }

  /** Rejects any key that no read asked for, suggesting the nearest known one. */
  done(known: Iterable<string> = this.#seen): void {
    const knownSet = new Set(known);
    for (const key of Object.keys(this.#tree)) {
      if (knownSet.has(key) || this.#seen.has(key)) continue;
      const hint = nearestKey(key, [...knownSet, ...this.#seen]);
      this.fail(key, `unknown key${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`);
    }
  }
}
