/**
 * Dependency direction between the folders of src/: data flows one way (attestors and
 * common below the agent; the cache manager below the Workload API it feeds), so a module
 * never imports from the layer that consumes it. Each rule names a folder and the folders
 * its files must not import from; the check reads the relative `from '…'`, `import '…'` and
 * `import('…')` specifiers of every .ts file under src/ and resolves them to repo paths.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');

interface Rule {
  /** Files under this folder (repo-relative, trailing slash)… */
  readonly importer: string;
  /** …must not import anything under these folders. */
  readonly forbidden: readonly string[];
  /** Why the arrow would run uphill. */
  readonly why: string;
}

const RULES: readonly Rule[] = [
  {
    importer: 'src/agent/manager/',
    forbidden: ['src/agent/workload-api/'],
    why: 'the cache manager feeds the Workload API; the consumer declares the interface it needs',
  },
  {
    importer: 'src/attestors/',
    forbidden: ['src/agent/'],
    why: 'attestors are plugins the agent loads; their contracts live beside them',
  },
  {
    importer: 'src/common/',
    forbidden: ['src/agent/', 'src/server/', 'src/attestors/'],
    why: 'common is the bottom layer',
  },
  {
    importer: 'src/server/',
    forbidden: ['src/agent/'],
    why: 'the server and the agent share only common and attestors',
  },
];

const SPECIFIER_PATTERNS: readonly RegExp[] = [
  /\bfrom\s*['"]([^'"]+)['"]/g,
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  /^\s*import\s*['"]([^'"]+)['"]/gm,
];

/** Every .ts file under dir, as repo-relative POSIX paths. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(REPO, dir), { withFileTypes: true })) {
    const path = posix.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** The repo-relative paths a source file imports (relative specifiers only; packages are skipped). */
function importedPaths(file: string, text: string): string[] {
  const out = new Set<string>();
  for (const pattern of SPECIFIER_PATTERNS) {
    for (const match of text.matchAll(pattern)) {
      const specifier = match[1];
      if (specifier === undefined || !specifier.startsWith('.')) continue;
      const absolute = join(REPO, dirname(file), specifier);
      out.add(relative(REPO, absolute).split(sep).join('/'));
    }
  }
  return [...out];
}

/** Every (importer, imported) pair that breaks the rule. */
function violations(rule: Rule, files: readonly string[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    if (!file.startsWith(rule.importer)) continue;
    for (const imported of importedPaths(file, readFileSync(join(REPO, file), 'utf8'))) {
      if (rule.forbidden.some((folder) => imported.startsWith(folder))) out.push(`${file} imports ${imported}`);
    }
  }
  return out;
}

describe('layering: imports point downhill', () => {
  const files = tsFiles('src').filter((f) => !f.startsWith('src/gen/'));

  it('finds the source files and resolves their imports', () => {
    expect(files).toContain('src/agent/manager/cache-manager.ts');
    expect(importedPaths('src/agent/x/a.ts', "import { b } from '../y/b.ts';\nexport type { C } from './c.ts';"))
      .toEqual(['src/agent/y/b.ts', 'src/agent/x/c.ts']);
    expect(importedPaths('src/a.ts', "const m = await import('./lazy.ts');\nimport 'node:fs';")).toEqual(['src/lazy.ts']);
  });

  for (const rule of RULES) {
    it(`nothing under ${rule.importer} imports from ${rule.forbidden.join(', ')} (${rule.why})`, () => {
      expect(files.some((f) => f.startsWith(rule.importer)), `no files under ${rule.importer}`).toBe(true);
      const found = violations(rule, files);
      expect(found, `uphill imports:\n${found.join('\n')}`).toEqual([]);
    });
  }
});
