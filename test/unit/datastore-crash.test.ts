import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatastore } from '../../src/server/datastore/datastore.ts';
import { selectorSetKey } from '../../src/server/datastore/selectors.ts';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'datastore-crash-test-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('crash safety', () => {
  it('a kill -9 in the middle of writes leaves only whole entries', async () => {
    const path = join(dir, 'ds.sqlite3');
    const script = join(dir, 'writer.ts');
    const module = resolve('src/server/datastore/datastore.ts');
    writeFileSync(
      script,
      `import { openDatastore } from ${JSON.stringify(module)};
const ds = openDatastore({ path: ${JSON.stringify(path)}, trustDomain: 'example.org' });
process.stdout.write('ready\\n');
for (let batch = 0; ; batch++) {
  const inputs = [];
  for (let i = 0; i < 50; i++) {
    inputs.push({
      spiffeId: 'spiffe://example.org/w/' + batch + '/' + i,
      parentId: 'spiffe://example.org/spire/agent/x',
      selectors: [{ type: 'a', value: String(i) }, { type: 'b', value: String(batch) }, { type: 'c', value: 'x' }],
      dnsNames: ['w' + i + '.example'],
    });
  }
  ds.batchCreateEntries(inputs);
  if (batch % 3 === 0) ds.updateEntry(ds.listEntriesPage(undefined, { pageSize: 1 }).entries[0].id, { selectors: [{ type: 'z', value: String(batch) }] });
}
`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((done, fail) => {
      child.stdout.once('data', () => done());
      child.once('exit', (code) => fail(new Error(`writer exited early with ${String(code)}`)));
    });
    await new Promise((r) => setTimeout(r, 400));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const ds = openDatastore({ path, trustDomain: 'example.org' });
    try {
      const entries = ds.listEntries();
      expect(entries.length).toBeGreaterThan(0);
      // Whole batches only (no update touched the count), and every entry complete.
      expect(entries.length % 50).toBe(0);
      const raw = new DatabaseSync(path, { readOnly: true });
      try {
        expect(raw.prepare('PRAGMA integrity_check').get()?.integrity_check).toBe('ok');
        const keys = new Map(raw.prepare('SELECT id, selectors_key FROM entries').all().map((r) => [String(r.id), String(r.selectors_key)]));
        for (const e of entries) {
          expect(e.selectors.length).toBeGreaterThan(0);
          expect(selectorSetKey(e.selectors)).toBe(keys.get(e.id));
          expect(e.dnsNames.length).toBe(1);
        }
      } finally {
        raw.close();
      }
    } finally {
      ds.close();
    }
  });
});
