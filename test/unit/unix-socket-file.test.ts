/**
 * Owning a Unix socket path with real sockets in this process: a live socket is refused and
 * keeps working, a stale one is replaced, anything else is refused untouched, and the socket
 * is removed on exit only while it is still ours.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  claimSocketPath,
  classifyConnectError,
  MAX_SOCKET_PATH_BYTES,
  probeSocket,
  publishSocket,
  removeSocketIfOwned,
  socketPathLengthProblem,
  type SocketFileId,
} from '../../src/common/unix-socket-file.ts';
import { PathError } from '../../src/common/path-errors.ts';

const OWNER = { role: 'agent', dirMode: 0o755 } as const;

describe('classifyConnectError', () => {
  it.each([
    { code: 'ECONNREFUSED', expected: { state: 'stale' } },
    { code: 'ENOENT', expected: { state: 'absent' } },
    { code: 'EAGAIN', expected: { state: 'live' } },
    { code: 'EACCES', expected: { state: 'unknown', reason: 'EACCES' } },
    { code: undefined, expected: { state: 'unknown', reason: 'boom' } },
  ])('$code', ({ code, expected }) => {
    expect(classifyConnectError(code, 'boom')).toEqual(expected);
  });
});

describe('socketPathLengthProblem', () => {
  it.each([
    { name: 'fits', path: `/${'a'.repeat(MAX_SOCKET_PATH_BYTES - 1)}`, expected: undefined },
    {
      name: 'one byte too long',
      path: `/${'a'.repeat(MAX_SOCKET_PATH_BYTES)}`,
      expected: 'is 108 bytes long, but a Unix socket path can have at most 107; choose a shorter path',
    },
    {
      name: 'counted in bytes, not characters',
      path: `/${'é'.repeat(54)}`,
      expected: 'is 109 bytes long, but a Unix socket path can have at most 107; choose a shorter path',
    },
  ])('$name', ({ path, expected }) => {
    expect(socketPathLengthProblem(path)).toBe(expected);
  });
});

/** Publishes a net.Server at `path` the way the Workload API does. */
async function publish(server: Server, path: string, mode = 0o777): Promise<SocketFileId> {
  await claimSocketPath(path, OWNER);
  return publishSocket(path, {
    ...OWNER,
    mode,
    bind: (temp) => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(temp, () => resolve());
    }),
    unbind: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Connects, reads one line the server writes on accept. */
function greeting(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('data', (d) => {
      resolve(d.toString());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** A server that writes `text` to each connection (probes hang up at once: ignore their resets). */
function greeter(text: string): Server {
  return createServer((s) => {
    s.on('error', () => undefined);
    s.end(text);
  });
}

describe('claim, publish, remove', () => {
  let dir: string;
  const servers: Server[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sock-own-'));
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => (s.listening ? close(s) : undefined)));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('publishes with the mode, creating the directory; the socket serves', async () => {
    const path = join(dir, 'new', 'api.sock');
    const a = greeter('a');
    servers.push(a);
    const id = await publish(a, path);
    const st = await lstat(path);
    expect({ socket: st.isSocket(), mode: st.mode & 0o777, ino: st.ino }).toEqual({ socket: true, mode: 0o777, ino: id.ino });
    expect((await lstat(join(dir, 'new'))).mode & 0o777).toBe(0o755);
    expect(await greeting(path)).toBe('a');
    expect(await probeSocket(path)).toEqual({ state: 'live' });
  });

  it('refuses a live socket, naming it, and the first server keeps serving', async () => {
    const path = join(dir, 'live.sock');
    const a = greeter('a');
    servers.push(a);
    await publish(a, path);
    const b = greeter('b');
    servers.push(b);
    const err = await publish(b, path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PathError);
    expect((err as PathError).detail).toBe(`"${path}" is in use: another agent is serving on it; stop that agent first, or give this one its own socket_path`);
    expect(b.listening).toBe(false);
    expect(await greeting(path)).toBe('a');
  });

  it('replaces a stale socket left by a killed process', async () => {
    const path = join(dir, 'stale.sock');
    const crash = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', crash]);
    expect((await lstat(path)).isSocket()).toBe(true);
    expect(await probeSocket(path)).toEqual({ state: 'stale' });
    const a = greeter('a');
    servers.push(a);
    await publish(a, path);
    expect(await greeting(path)).toBe('a');
  });

  it('refuses a regular file and leaves it alone', async () => {
    const path = join(dir, 'precious');
    await writeFile(path, 'keep me');
    const err = await claimSocketPath(path, OWNER).catch((e: unknown) => e);
    expect((err as PathError).message).toBe(`unix socket: "${path}" exists and is not a socket; move it away or choose another socket_path`);
    expect(await readFile(path, 'utf8')).toBe('keep me');
  });

  it('refuses a path below a regular file, naming the file', async () => {
    const file = join(dir, 'plain');
    await writeFile(file, '');
    const path = join(file, 'api.sock');
    const err = await claimSocketPath(path, OWNER).catch((e: unknown) => e);
    expect((err as PathError).detail).toBe(`"${file}" is a file, not a directory, so "${path}" cannot be created below it; move that file away or choose a path outside it`);
  });

  it('refuses a path too long for a socket address', async () => {
    const path = join(dir, `${'s'.repeat(120)}.sock`);
    const err = await claimSocketPath(path, OWNER).catch((e: unknown) => e);
    expect((err as PathError).detail).toMatch(/^".*" is \d+ bytes long, but a Unix socket path can have at most 107; choose a shorter path$/);
  });

  it('publishes a path of exactly the maximum length (the temporary name fits too)', async () => {
    const name = 'm'.repeat(MAX_SOCKET_PATH_BYTES - Buffer.byteLength(dir) - 1);
    const path = join(dir, name);
    expect(Buffer.byteLength(path)).toBe(MAX_SOCKET_PATH_BYTES);
    const a = greeter('a');
    servers.push(a);
    await publish(a, path);
    expect(await greeting(path)).toBe('a');
  });

  it('closing the listener leaves the path; removal takes only our own socket', async () => {
    const path = join(dir, 'own.sock');
    const a = greeter('a');
    servers.push(a);
    const id = await publish(a, path);
    await close(a);
    // libuv unlinks the name it bound, which was the temporary one: the path is still there.
    expect(existsSync(path)).toBe(true);
    await removeSocketIfOwned(path, id);
    expect(existsSync(path)).toBe(false);
  });

  it('does not remove a socket another process published at the path meanwhile', async () => {
    const path = join(dir, 'taken-over.sock');
    const a = greeter('a');
    servers.push(a);
    const idA = await publish(a, path);
    await close(a); // A is gone; its socket file is stale now
    const b = greeter('b');
    servers.push(b);
    await publish(b, path);
    await removeSocketIfOwned(path, idA);
    expect(await greeting(path)).toBe('b');
  });

  it('leaves no temporary file behind', async () => {
    const sub = join(dir, 'clean');
    const a = greeter('a');
    servers.push(a);
    await publish(a, join(sub, 'api.sock'));
    const b = greeter('b');
    servers.push(b);
    await publish(b, join(sub, 'api.sock')).catch(() => undefined);
    expect(await readdir(sub)).toEqual(['api.sock']);
  });
});
