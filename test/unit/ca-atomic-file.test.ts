import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { readFileIfExists, writeFileAtomic } from '../../src/common/atomic-file.ts';
import { tempDir } from '../support/ca-fixtures.ts';

describe('writeFileAtomic', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(async () => cleanup());

  it('writes content that readFileIfExists returns', async () => {
    const path = join(dir, 'a.txt');
    await writeFileAtomic(path, 'hello');
    expect((await readFileIfExists(path))?.toString()).toBe('hello');
  });

  it.each([
    { mode: 0o600, umask: 0o022 },
    { mode: 0o644, umask: 0o077 },
    { mode: 0o600, umask: 0o000 },
  ])('sets mode $mode exactly whatever the umask ($umask)', async ({ mode, umask }) => {
    const path = join(dir, 'k.pem');
    const old = process.umask(umask);
    try {
      await writeFileAtomic(path, 'secret', { mode });
    } finally {
      process.umask(old);
    }
    expect((await stat(path)).mode & 0o777).toBe(mode);
  });

  it('replaces an existing file, keeping the new mode, and leaves no temporary file', async () => {
    const path = join(dir, 'state.json');
    await writeFile(path, 'old', { mode: 0o644 });
    await writeFileAtomic(path, Buffer.from('new'), { mode: 0o600 });
    expect((await readFileIfExists(path))?.toString()).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('is not disturbed by a temporary file left by a crash', async () => {
    const path = join(dir, 'state.json');
    await writeFileAtomic(path, 'v1');
    await writeFile(join(dir, `.state.json.tmp-${process.pid}-deadbeef0000`), 'half-writ');
    await writeFileAtomic(path, 'v2');
    expect((await readFileIfExists(path))?.toString()).toBe('v2');
    await writeFileAtomic(path, 'v3');
    expect((await readFileIfExists(path))?.toString()).toBe('v3');
  });

  it('removes its temporary file and keeps the target when the rename fails', async () => {
    const path = join(dir, 'target');
    await mkdir(path); // renaming a file over a directory fails
    await expect(writeFileAtomic(path, 'x')).rejects.toMatchObject({ code: 'EISDIR' });
    expect(await readdir(dir)).toEqual(['target']);
  });
});

describe('readFileIfExists', () => {
  it('returns undefined for a missing file and throws for other errors', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      expect(await readFileIfExists(join(dir, 'nope'))).toBeUndefined();
      await expect(readFileIfExists(dir)).rejects.toMatchObject({ code: 'EISDIR' });
    } finally {
      await cleanup();
    }
  });
});
