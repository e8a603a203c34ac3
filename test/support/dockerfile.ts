/**
 * A small reader for this project's Dockerfile and .dockerignore, so tests can check the image
 * recipe and rebuild its runtime layout without a container engine. It understands what the
 * Dockerfile uses (FROM … AS, WORKDIR, COPY [--from], RUN, USER, ENTRYPOINT/CMD in exec form,
 * LABEL, ENV, ARG, EXPOSE, line continuations, comments), not every Dockerfile feature.
 */
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { REPO } from './server-process.ts';

export interface Instruction {
  /** Upper-case keyword (COPY, RUN, …). */
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  readonly args: string;
  /** 1-based line of the keyword. */
  readonly line: number;
}

export interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Parses Dockerfile text into stages. Instructions before the first FROM (ARG) are dropped. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] as string;
    if (first.trim() === '' || first.trim().startsWith('#')) continue;
    const start = i + 1;
    let joined = first;
    while (joined.trimEnd().endsWith('\\') && i + 1 < lines.length) {
      joined = joined.trimEnd().slice(0, -1);
      i++;
      const next = lines[i] as string;
      if (next.trim().startsWith('#')) continue; // comments inside a continued instruction
      joined += ' ' + next.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(joined);
    if (m === null) throw new Error(`Dockerfile line ${start}: cannot parse "${joined}"`);
    const keyword = (m[1] as string).toUpperCase();
    const args = (m[2] as string).trim();
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (from === null) throw new Error(`Dockerfile line ${start}: cannot parse FROM "${args}"`);
      stages.push({ base: from[1] as string, name: from[2], instructions: [] });
      continue;
    }
    stages.at(-1)?.instructions.push({ keyword, args, line: start });
  }
  return stages;
}

/** The exec-form (JSON array) arguments of ENTRYPOINT/CMD; throws on the shell form. */
export function execForm(instruction: Instruction): string[] {
  const parsed: unknown = JSON.parse(instruction.args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
    throw new Error(`line ${instruction.line}: ${instruction.keyword} must use the exec form (a JSON array of strings)`);
  }
  return parsed as string[];
}

export interface CopyArgs {
  readonly from: string | undefined;
  readonly flags: Record<string, string>;
  readonly sources: string[];
  readonly dest: string;
}

/** `COPY [--from=x] [--chown=…] src… dest` (shell form only, as this Dockerfile writes it). */
export function copyArgs(instruction: Instruction): CopyArgs {
  const words = instruction.args.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith('--')) {
    const [k, v = ''] = (words.shift() as string).slice(2).split('=');
    flags[k as string] = v;
  }
  const dest = words.pop();
  if (dest === undefined || words.length === 0) throw new Error(`line ${instruction.line}: COPY needs sources and a destination`);
  return { from: flags['from'], flags, sources: words, dest };
}

/** Resolves a path the way WORKDIR/COPY do: relative paths are relative to `workdir`. */
export function containerPath(workdir: string, p: string): string {
  return posix.resolve(workdir, p);
}

export function readDockerfile(): Stage[] {
  return parseDockerfile(readFileSync(join(REPO, 'Dockerfile'), 'utf8'));
}

/** The final stage: the image that ships. */
export function finalStage(stages: Stage[]): Stage {
  const last = stages.at(-1);
  if (last === undefined) throw new Error('Dockerfile has no FROM');
  return last;
}

/** The last instruction with this keyword in a stage. */
export function lastOf(stage: Stage, keyword: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
      if (pattern[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * A .dockerignore matcher with Docker's rules as far as this project uses them: patterns in
 * order, the last match wins, `!` re-includes, a pattern matching a directory matches what
 * is below it. Returns whether a context-relative POSIX path is excluded from the context.
 */
export function dockerignoreMatcher(text: string): (relPath: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
      return { negate, re: globToRegExp(pattern) };
    });
  return (relPath: string): boolean => {
    const parts = relPath.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) {
      if (prefixes.some((p) => rule.re.test(p))) excluded = !rule.negate;
    }
    return excluded;
  };
}

export function readDockerignore(): (relPath: string) => boolean {
  return dockerignoreMatcher(readFileSync(join(REPO, '.dockerignore'), 'utf8'));
}
