/**
 * Failures caused by configured paths: the sentences (pure, table-driven), and what
 * toPathError / checkWritableFile / withConfigPath make of real filesystem failures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ApiError } from '../../src/common/errors.ts';
import { checkWritableFile, describePathFailure, findNonDirectory, PathError, toPathError, withConfigPath, type PathFailure, type PathUse } from '../../src/common/path-errors.ts';

describe('describePathFailure', () => {
  const rows: Array<{ name: string; use: PathUse; failure: PathFailure; expected: string }> = [
    {
      name: 'a file in the way of a directory to create',
      use: 'directory',
      failure: { code: 'ENOTDIR', path: '/a/f/data', blocker: '/a/f', message: '' },
      expected: '"/a/f" is a file, not a directory, so "/a/f/data" cannot be created below it; move that file away or choose a path outside it',
    },
    {
      name: 'the directory itself is a file',
      use: 'directory',
      failure: { code: 'EEXIST', path: '/a/f', blocker: '/a/f', message: '' },
      expected: '"/a/f" exists and is not a directory; remove it or choose another directory',
    },
    {
      name: 'a file in the way of a socket',
      use: 'socket',
      failure: { code: 'EEXIST', path: '/a/f/api.sock', blocker: '/a/f', message: '' },
      expected: '"/a/f" is a file, not a directory, so "/a/f/api.sock" cannot be created below it; move that file away or choose a path outside it',
    },
    {
      name: 'a file in the way of a file to read',
      use: 'read',
      failure: { code: 'ENOTDIR', path: '/a/f/ca.pem', blocker: '/a/f', message: '' },
      expected: '"/a/f" is a file, not a directory, so "/a/f/ca.pem" cannot be reached; move that file away or choose a path outside it',
    },
    {
      name: 'ENOTDIR without a blocker found',
      use: 'write',
      failure: { code: 'ENOTDIR', path: '/a/b', message: '' },
      expected: 'a parent of "/a/b" is not a directory; choose a path whose parents are directories',
    },
    {
      name: 'permission denied on a directory',
      use: 'directory',
      failure: { code: 'EACCES', path: '/root/d', message: '' },
      expected: 'permission denied on "/root/d"; run as a user that may create or write it, or choose another path',
    },
    {
      name: 'permission denied on a file to read',
      use: 'read',
      failure: { code: 'EPERM', path: '/k.pem', message: '' },
      expected: 'permission denied on "/k.pem"; run as a user that may read it, or choose another path',
    },
    {
      name: 'permission denied on a socket',
      use: 'socket',
      failure: { code: 'EACCES', path: '/run/api.sock', message: '' },
      expected: 'permission denied on "/run/api.sock"; run as a user that may create a socket in it, or choose another path',
    },
    {
      name: 'read-only file system',
      use: 'directory',
      failure: { code: 'EROFS', path: '/ro/d', message: '' },
      expected: '"/ro/d" is on a read-only file system; choose a writable path',
    },
    { name: 'missing file to read', use: 'read', failure: { code: 'ENOENT', path: '/nope', message: '' }, expected: '"/nope" does not exist' },
    {
      name: 'missing parent of a file to write',
      use: 'write',
      failure: { code: 'ENOENT', path: '/nope/f', message: '' },
      expected: 'a parent directory of "/nope/f" does not exist',
    },
    { name: 'a directory where a file is expected', use: 'read', failure: { code: 'EISDIR', path: '/d', message: '' }, expected: '"/d" is a directory, not a file' },
    { name: 'no space', use: 'write', failure: { code: 'ENOSPC', path: '/f', message: '' }, expected: 'no space left on the file system holding "/f"' },
    { name: 'symlink loop', use: 'read', failure: { code: 'ELOOP', path: '/l', message: '' }, expected: '"/l" has too many levels of symbolic links' },
    {
      name: 'name too long',
      use: 'write',
      failure: { code: 'ENAMETOOLONG', path: '/x', message: '' },
      expected: '"/x" is too long for the file system; choose a shorter path',
    },
    {
      name: 'an errno without an explanation keeps its message',
      use: 'read',
      failure: { code: 'EIO', path: '/f', message: 'EIO: i/o error, read' },
      expected: '"/f": EIO: i/o error, read',
    },
  ];
  it.each(rows)('$name', ({ use, failure, expected }) => {
    expect(describePathFailure(use, failure)).toBe(expected);
  });
});

describe('filesystem failures', () => {
  let dir: string;
  let file: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'path-errors-'));
    file = join(dir, 'regular');
    await writeFile(file, 'x');
    await mkdir(join(dir, 'sub'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('findNonDirectory names the first file on the way, or nothing', async () => {
    expect(await findNonDirectory(join(file, 'a', 'b'), true)).toBe(file);
    expect(await findNonDirectory(file, true)).toBe(file);
    expect(await findNonDirectory(file, false)).toBeUndefined();
    expect(await findNonDirectory(join(dir, 'sub', 'missing', 'x'), true)).toBeUndefined();
  });

  it('toPathError explains a mkdir below a regular file', async () => {
    const target = join(file, 'data');
    const err = await mkdir(target, { recursive: true }).catch((e: unknown) => e);
    const described = await toPathError(err, target, 'directory', 'agent');
    expect(described).toBeInstanceOf(PathError);
    expect((described as PathError).message).toBe(
      `agent: "${file}" is a file, not a directory, so "${target}" cannot be created below it; move that file away or choose a path outside it`,
    );
  });

  it('toPathError leaves errors that are not system-call failures alone', async () => {
    const apiError = new ApiError(Code.INTERNAL, 'other');
    expect(await toPathError(apiError, '/x', 'read')).toBe(apiError);
  });

  it('withConfigPath names the field', async () => {
    const err = await withConfigPath('agent.data_dir', file, 'directory', () => mkdir(file, { recursive: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect({ code: (err as ApiError).code, message: (err as ApiError).message }).toEqual({
      code: Code.INVALID_ARGUMENT,
      message: `config: agent.data_dir: "${file}" exists and is not a directory; remove it or choose another directory`,
    });
  });

  it('checkWritableFile refuses a file in the way and a directory, and accepts a new file', async () => {
    await expect(checkWritableFile(join(file, 'db.sqlite3'), 'datastore')).rejects.toThrow(
      `datastore: "${file}" is a file, not a directory, so "${join(file, 'db.sqlite3')}" cannot be created below it; move that file away or choose a path outside it`,
    );
    await expect(checkWritableFile(join(dir, 'sub'), 'datastore')).rejects.toThrow(`datastore: "${join(dir, 'sub')}" is a directory, not a file`);
    await expect(checkWritableFile(join(dir, 'sub', 'new', 'db.sqlite3'))).resolves.toBeUndefined();
    await expect(checkWritableFile(file)).resolves.toBeUndefined();
  });
});
