import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createUnixAttestor, type UnixAttestorOptions } from '../../src/attestors/workload/unix.ts';
import { ApiError, Code } from '../../src/common/errors.ts';

const PID = 4242;
const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n';
const GROUP = 'root:x:0:\nadm:x:4:alice\nalice:x:1000:\n';
const EXE_CONTENT = 'hello world'; // 11 bytes
const EXE_SHA256 = createHash('sha256').update(EXE_CONTENT).digest('hex');

let root: string;
let procRoot: string;
let etcRoot: string;
let exePath: string;

const status = (uid: string, gid: string, groups: string): string =>
  `Name:\tworker\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t${uid}\nGid:\t${gid}\nFDSize:\t64\nGroups:\t${groups}\nVmRSS:\t  1636 kB\n`;

async function fakeProcess(pid: number, statusText: string, exe?: string): Promise<void> {
  const dir = join(procRoot, String(pid));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'status'), statusText);
  if (exe !== undefined) await symlink(exe, join(dir, 'exe'));
}

async function rejection(promise: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(err)}`);
  return { code: err.code, message: err.message };
}

const attest = (options: UnixAttestorOptions, pid = PID): Promise<string[]> =>
  createUnixAttestor({ procRoot, etcRoot, ...options }).attest(pid, new AbortController().signal);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'unix-attestor-'));
  procRoot = join(root, 'proc');
  etcRoot = join(root, 'etc');
  await mkdir(etcRoot, { recursive: true });
  await writeFile(join(etcRoot, 'passwd'), PASSWD);
  await writeFile(join(etcRoot, 'group'), GROUP);
  exePath = join(root, 'bin', 'worker');
  await mkdir(join(root, 'bin'));
  await writeFile(exePath, EXE_CONTENT);
  await fakeProcess(PID, status('1000\t1000\t1000\t1000', '1000\t1000\t1000\t1000', '4 27 1000 '), exePath);
  await fakeProcess(4243, status('1000\t0\t0\t0', '1000\t0\t0\t0', ' '));
  await fakeProcess(4244, status('2000\t2000\t2000\t2000', '3000\t3000\t3000\t3000', ''));
  await fakeProcess(4245, 'Name:\tbroken\nUid:\t0\t0\t0\t0\n');
  await fakeProcess(4246, status('0\t0\t0\t0', '0\t0\t0\t0', ''));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('unix attestor on a fake procfs', () => {
  const cases: Array<[string, UnixAttestorOptions, number, string[]]> = [
    [
      'emits ids, names and supplementary groups in SPIRE order, naming only known groups',
      {},
      PID,
      [
        'uid:1000',
        'user:alice',
        'gid:1000',
        'group:alice',
        'supplementary_gid:4',
        'supplementary_group:adm',
        'supplementary_gid:27',
        'supplementary_gid:1000',
        'supplementary_group:alice',
      ],
    ],
    ['uses the effective ids of a setuid process', {}, 4243, ['uid:0', 'user:root', 'gid:0', 'group:root']],
    ['omits names that are not in passwd or group', {}, 4244, ['uid:2000', 'gid:3000']],
    [
      'omits names when passwd and group are missing',
      { etcRoot: join(tmpdir(), 'no-such-etc-dir') },
      PID,
      ['uid:1000', 'gid:1000', 'supplementary_gid:4', 'supplementary_gid:27', 'supplementary_gid:1000'],
    ],
    [
      'adds path and sha256 with workload path discovery',
      { discoverWorkloadPath: true },
      PID,
      [
        'uid:1000',
        'user:alice',
        'gid:1000',
        'group:alice',
        'supplementary_gid:4',
        'supplementary_group:adm',
        'supplementary_gid:27',
        'supplementary_gid:1000',
        'supplementary_group:alice',
        'PATH',
        `sha256:${EXE_SHA256}`,
      ],
    ],
  ];
  for (const [behaviour, options, pid, expected] of cases) {
    it(behaviour, async () => {
      const want = expected.map((v) => (v === 'PATH' ? `path:${exePath}` : v));
      expect(await attest(options, pid)).toEqual(want);
    });
  }

  const discovery: Array<[string, number, string | undefined]> = [
    ['hashes a file exactly at the size limit', 11, EXE_SHA256],
    ['hashes without limit when the limit is 0', 0, EXE_SHA256],
    ['skips the hash when the limit is negative', -1, undefined],
  ];
  for (const [behaviour, workloadSizeLimit, sha] of discovery) {
    it(behaviour, async () => {
      const values = await attest({ discoverWorkloadPath: true, workloadSizeLimit });
      expect(values.slice(9)).toEqual(sha === undefined ? [`path:${exePath}`] : [`path:${exePath}`, `sha256:${sha}`]);
    });
  }

  const failures: Array<[string, UnixAttestorOptions, number, Code, string]> = [
    [
      'refuses to hash an executable over the size limit',
      { discoverWorkloadPath: true, workloadSizeLimit: 10 },
      PID,
      Code.FAILED_PRECONDITION,
      'EXE_TOO_LARGE',
    ],
    ['reports a process that does not exist', {}, 999_999, Code.NOT_FOUND, 'unix: process 999999 not found'],
    [
      'reports a process without an exe link as not found when discovering its path',
      { discoverWorkloadPath: true },
      4243,
      Code.NOT_FOUND,
      'unix: process 4243 not found',
    ],
    [
      'reports a malformed status file',
      {},
      4245,
      Code.INTERNAL,
      'unix: malformed status of process 4245: the "Gid:" line is missing',
    ],
    ['rejects a pid of 0', {}, 0, Code.INVALID_ARGUMENT, 'unix: invalid pid 0'],
    ['rejects a fractional pid', {}, 1.5, Code.INVALID_ARGUMENT, 'unix: invalid pid 1.5'],
  ];
  for (const [behaviour, options, pid, code, message] of failures) {
    it(behaviour, async () => {
      const want =
        message === 'EXE_TOO_LARGE'
          ? `unix: workload ${exePath} of process ${PID} exceeds the size limit (11 > 10 bytes)`
          : message;
      expect(await rejection(attest(options, pid))).toEqual({ code, message: want });
    });
  }

  it('rejects a non-integer size limit at construction', () => {
    expect(() => createUnixAttestor({ workloadSizeLimit: 1.5 })).toThrow(
      new ApiError(Code.INVALID_ARGUMENT, 'unix: workload_size_limit must be an integer, not 1.5'),
    );
  });

  it('fails with CANCELLED when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const plugin = createUnixAttestor({ procRoot, etcRoot });
    expect(await rejection(plugin.attest(PID, controller.signal))).toEqual({
      code: Code.CANCELLED,
      message: `unix: attestation of process ${PID} cancelled`,
    });
  });

  it('is named unix', () => {
    expect(createUnixAttestor({ procRoot, etcRoot }).name).toBe('unix');
  });

  it('reads the proc root from HOST_PROC when none is given', async () => {
    vi.stubEnv('HOST_PROC', procRoot);
    expect(await createUnixAttestor({ etcRoot }).attest(4246, new AbortController().signal)).toEqual([
      'uid:0',
      'user:root',
      'gid:0',
      'group:root',
    ]);
  });

  it('prefers an explicit proc root over HOST_PROC', async () => {
    vi.stubEnv('HOST_PROC', join(tmpdir(), 'no-such-proc'));
    expect(await attest({}, 4246)).toEqual(['uid:0', 'user:root', 'gid:0', 'group:root']);
  });
});

describe('unix attestor name cache', () => {
  it('re-reads passwd only when its mtime changes', async () => {
    const etc = await mkdtemp(join(root, 'etc-cache-'));
    const passwd = join(etc, 'passwd');
    await writeFile(passwd, 'alice:x:1000:1000::/:/bin/sh\n');
    await writeFile(join(etc, 'group'), '');
    const mtime = 1_700_000_000; // whole seconds, so setting it back is exact
    await utimes(passwd, mtime, mtime);
    const plugin = createUnixAttestor({ procRoot, etcRoot: etc, nameRecheckMs: 0 });
    await fakeProcess(4247, status('1000\t1000\t1000\t1000', '1000\t1000\t1000\t1000', ''));
    const attestAlice = (): Promise<string[]> => plugin.attest(4247, new AbortController().signal);

    expect(await attestAlice()).toEqual(['uid:1000', 'user:alice', 'gid:1000']);
    // Same size, same inode, mtime put back: the cached parse is served.
    await writeFile(passwd, 'carol:x:1000:1000::/:/bin/sh\n');
    await utimes(passwd, mtime, mtime);
    expect(await attestAlice()).toEqual(['uid:1000', 'user:alice', 'gid:1000']);
    // A new mtime: the file is read again.
    await utimes(passwd, mtime, mtime + 5);
    expect(await attestAlice()).toEqual(['uid:1000', 'user:carol', 'gid:1000']);
  });

  it('picks up passwd once it appears', async () => {
    const etc = await mkdtemp(join(root, 'etc-late-'));
    const plugin = createUnixAttestor({ procRoot, etcRoot: etc, nameRecheckMs: 0 });
    const run = (): Promise<string[]> => plugin.attest(4246, new AbortController().signal);
    expect(await run()).toEqual(['uid:0', 'gid:0']);
    await writeFile(join(etc, 'passwd'), PASSWD);
    expect(await run()).toEqual(['uid:0', 'user:root', 'gid:0']);
  });

  it('serves concurrent attestations from one parse', async () => {
    const plugin = createUnixAttestor({ procRoot, etcRoot });
    const results = await Promise.all(
      Array.from({ length: 20 }, () => plugin.attest(4243, new AbortController().signal)),
    );
    for (const values of results) expect(values).toEqual(['uid:0', 'user:root', 'gid:0', 'group:root']);
  });
});

describe('unix attestor on the real /proc', () => {
  const real = (options: UnixAttestorOptions = {}) => createUnixAttestor({ procRoot: '/proc', ...options });
  const sha256OfFile = async (path: string): Promise<string> => {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  };

  it('reports the uid and gid of the test process', async () => {
    const values = await real().attest(process.pid, new AbortController().signal);
    expect(values[0]).toBe(`uid:${process.getuid?.()}`);
    expect(values).toContain(`gid:${process.getgid?.()}`);
  });

  it('reports the path and sha256 of the node executable', async () => {
    const values = await real({ discoverWorkloadPath: true }).attest(process.pid, new AbortController().signal);
    const path = realpathSync(process.execPath);
    expect(values.slice(-2)).toEqual([`path:${path}`, `sha256:${await sha256OfFile(process.execPath)}`]);
  });

  it('refuses to hash the node executable over a small limit', async () => {
    const path = realpathSync(process.execPath);
    const { size } = await stat(path);
    const plugin = real({ discoverWorkloadPath: true, workloadSizeLimit: 1024 });
    expect(await rejection(plugin.attest(process.pid, new AbortController().signal))).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: `unix: workload ${path} of process ${process.pid} exceeds the size limit (${size} > 1024 bytes)`,
    });
  });

  it('fails with CANCELLED when the signal aborts mid-attestation', async () => {
    const controller = new AbortController();
    const pending = real({ discoverWorkloadPath: true }).attest(process.pid, controller.signal);
    controller.abort();
    expect(await rejection(pending)).toEqual({
      code: Code.CANCELLED,
      message: `unix: attestation of process ${process.pid} cancelled`,
    });
  });

  it.skipIf(process.getuid?.() !== 0)('reports uid 65534 for a child spawned as nobody', async () => {
    const child = spawn('sleep', ['5'], { uid: 65534, gid: 65534, stdio: 'ignore' });
    try {
      const pid = child.pid;
      if (pid === undefined) throw new Error('spawn failed');
      const values = await real({ discoverWorkloadPath: true }).attest(pid, new AbortController().signal);
      expect(values[0]).toBe('uid:65534');
      expect(values).toContain('gid:65534');
      expect(values.some((v) => v.startsWith('supplementary_gid:'))).toBe(false);
      expect(values.find((v) => v.startsWith('path:'))).toMatch(/^path:\/.*\/sleep$/);
    } finally {
      child.kill();
    }
  });

  it('reports a process that has exited as not found', async () => {
    const child = spawn('true', [], { stdio: 'ignore' });
    const pid = child.pid;
    if (pid === undefined) throw new Error('spawn failed');
    await once(child, 'exit');
    expect(await rejection(real().attest(pid, new AbortController().signal))).toEqual({
      code: Code.NOT_FOUND,
      message: `unix: process ${pid} not found`,
    });
  });
});
