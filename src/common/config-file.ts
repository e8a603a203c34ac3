/**
 * Reads a SPIRE-style config file (HCL or JSON) into a plain tree of objects.
 *
 * HCL goes through HashiCorp's own parser (compiled to WebAssembly, @cdktf/hcl2json), run in a
 * short-lived child process (hcl-parse.ts: the parser's memory would otherwise stay with the agent);
 * both HCL and the JSON the SPIRE helm chart renders come out in one normal form:
 * blocks are objects, labelled blocks (`NodeAttestor "join_token" {…}`) are objects
 * keyed by label, and lists of scalars stay lists.
 */
import { readFile } from 'node:fs/promises';
import { ApiError, Code } from './errors.ts';
import { parseHcl } from './hcl-parse.ts';

/** A JSON-like value from a config file. */
export type ConfigValue = string | number | boolean | null | ConfigValue[] | ConfigTree;
/** A config block. */
export interface ConfigTree {
  [key: string]: ConfigValue;
}

export interface LoadOptions {
  /** Replace `$VAR` and `${VAR}` with environment values before parsing (SPIRE's -expandEnv). */
  expandEnv?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Expands `$VAR` / `${VAR}`; unset variables become empty strings, as in Go's os.ExpandEnv. */
export function expandEnv(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, a: string | undefined, b: string | undefined) => {
    return env[(a ?? b) as string] ?? '';
  });
}

function isTree(value: unknown): value is ConfigTree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Collapses the parser's block arrays: a one-element array of objects becomes the object;
 * an array of single-key objects (JSON's way of writing labelled blocks) is merged by key.
 */
export function normaliseConfig(value: unknown): ConfigValue {
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every(isTree)) {
      if (value.length === 1) return normaliseConfig(value[0]);
      const merged: ConfigTree = {};
      for (const item of value) {
        for (const [k, v] of Object.entries(item)) {
          if (k in merged) return value.map((v2) => normaliseConfig(v2));
          merged[k] = normaliseConfig(v);
        }
      }
      return merged;
    }
    return value.map((v) => normaliseConfig(v));
  }
  if (isTree(value)) {
    const out: ConfigTree = {};
    for (const [k, v] of Object.entries(value)) out[k] = normaliseConfig(v);
    return out;
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
  return null;
}

/**
 * Parses config text: JSON when the name ends in `.json` or the text starts with `{` (the SPIRE
 * helm chart renders JSON under the key `agent.conf`), HCL otherwise.
 */
export async function parseConfigText(name: string, text: string, opts: LoadOptions = {}): Promise<ConfigTree> {
  const source = opts.expandEnv ? expandEnv(text, opts.env ?? process.env) : text;
  let raw: unknown;
  try {
    const json = name.endsWith('.json') || source.trimStart().startsWith('{');
    raw = json ? JSON.parse(source) : await parseHcl(name, source);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INVALID_ARGUMENT, `config: cannot parse ${name}: ${detail}`);
  }
  const tree = normaliseConfig(raw);
  if (!isTree(tree)) throw new ApiError(Code.INVALID_ARGUMENT, `config: ${name} must hold blocks at the top level`);
  return tree;
}

/** Reads and parses a config file. */
export async function loadConfigFile(path: string, opts: LoadOptions = {}): Promise<ConfigTree> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INVALID_ARGUMENT, `config: cannot read ${path}: ${detail}`);
  }
  return parseConfigText(path, text, opts);
}
