import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, readFileSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer, connect, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  capturePeerCredentials,
  parseStartTime,
  readProcessFacts,
  releasePeerCredentials,
  type ProcessPeer,
} from '../../../src/agent/workload-api/peer-credentials.ts';
import { livenessFailure } from '../../../src/agent/workload-api/peer-tracker.ts';
import { pidfdOpen } from '../../../src/agent/workload-api/libc.ts';
import { withDescriptorsExhausted } from '../../support/descriptors.ts';

/** A /proc/<pid>/stat line whose field 22 is `start`. */
function statLine(pid: number, comm: string, start: string): string {
  const after = Array.from({ length: 50 }, (_, i) => (i === 0 ? 'S' : i === 19 ? start : String(i)));
  return `${pid} (${comm}) ${after.join(' ')}\n`;
}

/** A stat line whose fields after the command are `3 4 5 …` (each its own number), `count` of them. */
function fieldsAfterCommand(count: number): string {
  return `42 (node) ${Array.from({ length: count }, (_, i) => String(i + 3)).join(' ')}\n`;
}

describe('parseStartTime', () => {
  it.each([
    { name: 'a plain command', stat: statLine(42, 'node', '123456'), start: '123456' },
    { name: 'a command with spaces and ") "', stat: statLine(42, 'a) (b c) S 1', '777'), start: '777' },
    { name: 'the real stat of this process', stat: readFileSync('/proc/self/stat', 'latin1'), start: /^\d+$/ },
  ])('reads field 22 after the last ")" for $name', ({ stat, start }) => {
    const parsed = parseStartTime(stat);
    expect(parsed.ok).toBe(true);
    if (parsed.ok && typeof start === 'string') expect(parsed.value).toBe(start);
    if (parsed.ok && start instanceof RegExp) expect(parsed.value).toMatch(start);
  });

  it.each([
    { name: 'no parentheses', stat: '42 node S 1 2 3' },
    { name: 'too few fields', stat: '42 (node) S 1 2 3' },
    { name: 'a non-numeric start time', stat: statLine(42, 'node', 'x') },
    { name: 'fields up to 37 only (a pre-2.1.22 kernel)', stat: fieldsAfterCommand(35) },
    { name: 'the start time as the last field', stat: fieldsAfterCommand(20) },
  ])('rejects $name', ({ stat }) => {
    expect(parseStartTime(stat)).toEqual({ ok: false, error: expect.any(String) });
  });

  it('accepts fields up to 38 (the oldest layout read), start time 22', () => {
    expect(parseStartTime(fieldsAfterCommand(36))).toEqual({ ok: true, value: '22' });
  });
});

describe('livenessFailure', () => {
  let procRoot: string;
  let pidfd: number;
  const pid = process.pid;
  /** The caller as captured: with a pidfd (no start time), or without one (kernels < 5.3). */
  const peer = (): ProcessPeer => ({ kind: 'process', pid, uid: 0, gid: 0, pidfd, startTime: undefined, procUid: 0, procGid: 0 });
  const peerWithoutPidfd = (): ProcessPeer => ({ kind: 'process', pid, uid: 0, gid: 0, pidfd: undefined, startTime: '1000', procUid: 0, procGid: 0 });

  beforeEach(async () => {
    procRoot = await mkdtemp(join(tmpdir(), 'fake-proc-'));
    await mkdir(join(procRoot, String(pid)));
    await writeFile(join(procRoot, String(pid), 'stat'), statLine(pid, 'node', '1000'));
    const opened = pidfdOpen(pid);
    if (!opened.ok) throw new Error(`pidfd_open failed: ${opened.errno}`);
    pidfd = opened.value;
  });

  afterEach(async () => {
    closeSync(pidfd);
    await rm(procRoot, { recursive: true, force: true });
  });

  it.each([
    { name: 'with a pidfd', caller: () => peer() },
    { name: 'without a pidfd', caller: () => peerWithoutPidfd() },
  ])('accepts the same live process ($name)', ({ caller }) => {
    expect(livenessFailure(caller(), procRoot)).toBeUndefined();
  });

  it.runIf(process.geteuid?.() === 0).each([
    { name: 'a new start time', caller: peerWithoutPidfd, change: () => writeFile(join(procRoot, String(pid), 'stat'), statLine(pid, 'node', '2000')), reason: 'new process detected: process starttime 2000 does not match original caller 1000' },
    { name: 'a new owner uid', caller: peer, change: () => chown(join(procRoot, String(pid)), 1234, 0), reason: 'new process detected: process uid 1234 does not match original caller 0' },
    { name: 'a new owner gid', caller: peer, change: () => chown(join(procRoot, String(pid)), 0, 4321), reason: 'new process detected: process gid 4321 does not match original caller 0' },
    { name: 'a new owner uid, without a pidfd', caller: peerWithoutPidfd, change: () => chown(join(procRoot, String(pid)), 1234, 0), reason: 'new process detected: process uid 1234 does not match original caller 0' },
    { name: 'a vanished /proc entry', caller: peer, change: () => rm(join(procRoot, String(pid)), { recursive: true }), reason: 'caller exit suspected: could not read <proc>/<pid>: ENOENT' },
    { name: 'a vanished stat file, without a pidfd', caller: peerWithoutPidfd, change: () => unlink(join(procRoot, String(pid), 'stat')), reason: 'caller exit suspected: could not read <proc>/<pid>: ENOENT' },
  ])('reports $name', async ({ caller, change, reason }) => {
    await change();
    expect(livenessFailure(caller(), procRoot)).toEqual({ kind: 'gone', reason: reason.replace('<proc>', procRoot).replace('<pid>', String(pid)) });
  });

  it('does not read the start time while a pidfd vouches for the process (it cannot differ)', async () => {
    await writeFile(join(procRoot, String(pid), 'stat'), statLine(pid, 'node', '2000'));
    expect(livenessFailure({ ...peer(), startTime: '1000' }, procRoot)).toBeUndefined();
    await unlink(join(procRoot, String(pid), 'stat'));
    expect(livenessFailure(peer(), procRoot)).toBeUndefined();
  });

  it('reports a /proc entry the agent cannot read (not ENOENT) as its own problem, not as a vanished caller', async () => {
    await unlink(join(procRoot, String(pid), 'stat'));
    await mkdir(join(procRoot, String(pid), 'stat'));
    expect(livenessFailure(peerWithoutPidfd(), procRoot)).toEqual({
      kind: 'unavailable',
      cause: 'other',
      reason: `could not identify the caller: reading ${procRoot}/${pid} failed with other`,
    });
    // With a pidfd only the owner is read: a /proc root that is not a directory (ENOTDIR).
    const notADirectory = join(procRoot, 'file');
    await writeFile(notADirectory, '');
    expect(livenessFailure(peer(), notADirectory)).toEqual({
      kind: 'unavailable',
      cause: 'other',
      reason: `could not identify the caller: reading ${notADirectory}/${pid} failed with other`,
    });
  });

  it('detects through the pidfd that the original process has exited, even if /proc looks the same', async () => {
    const child = spawn('sleep', ['30']);
    await once(child, 'spawn');
    const opened = pidfdOpen(child.pid ?? -1);
    if (!opened.ok) throw new Error('pidfd_open failed');
    const childPeer: ProcessPeer = { ...peer(), pid: child.pid ?? -1, pidfd: opened.value };
    // /proc for the child is faked to look unchanged: only the pidfd can tell.
    await mkdir(join(procRoot, String(child.pid)));
    await writeFile(join(procRoot, String(child.pid), 'stat'), statLine(child.pid ?? -1, 'sleep', '1000'));
    expect(livenessFailure(childPeer, procRoot)).toBeUndefined();
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(livenessFailure(childPeer, procRoot)).toEqual({ kind: 'gone', reason: 'caller exit detected via pidfd' });
    closeSync(opened.value);
  });
});

describe('capturePeerCredentials', () => {
  let server: Server;
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peercred-'));
  });

  afterEach(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A real Unix connection from this process: the client end and the accepted end. */
  async function acceptOne(): Promise<{ client: Socket; socket: Socket }> {
    const path = join(dir, 's.sock');
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer(resolve);
    });
    await new Promise<void>((r) => server.listen(path, r));
    const client = connect(path);
    return { client, socket: await accepted };
  }

  it('reads pid, uid, gid, a pidfd and the /proc owner of the connecting process (no start time: the pidfd pins it)', async () => {
    const { client, socket } = await acceptOne();
    const creds = capturePeerCredentials(socket, '/proc');
    const facts = readProcessFacts('/proc', process.pid);
    expect(creds).toMatchObject({
      kind: 'process',
      pid: process.pid,
      uid: process.geteuid?.(),
      gid: process.getegid?.(),
      startTime: undefined,
      procUid: facts.ok ? facts.value.uid : -1,
      procGid: facts.ok ? facts.value.gid : -1,
    });
    expect(creds.kind === 'process' && creds.pidfd !== undefined).toBe(true);
    releasePeerCredentials(creds);
    client.destroy();
    socket.destroy();
  });

  it('at the open-files limit (no descriptor left for the pidfd), a live caller is reported Unavailable with the cause, not as gone', async () => {
    const { client, socket } = await acceptOne();
    const creds = await withDescriptorsExhausted(0, () => capturePeerCredentials(socket, '/proc'));
    releasePeerCredentials(creds);
    expect(creds).toEqual({
      kind: 'unavailable',
      cause: 'EMFILE',
      reason: 'could not identify the caller: opening a pidfd (SO_PEERPIDFD) failed with EMFILE: the agent is out of file descriptors (raise its open-files limit)',
    });
    client.destroy();
    socket.destroy();
  });

  it('with one descriptor left (the pidfd takes it), still identifies the caller: /proc is read without opening a file', async () => {
    const { client, socket } = await acceptOne();
    const creds = await withDescriptorsExhausted(1, () => capturePeerCredentials(socket, '/proc'));
    releasePeerCredentials(creds);
    expect(creds).toMatchObject({ kind: 'process', pid: process.pid });
    client.destroy();
    socket.destroy();
  });

  it('refuses a socket that has no Unix descriptor', () => {
    expect(() => capturePeerCredentials(new Socket(), '/proc')).toThrow(/no readable Unix socket descriptor/);
  });
});
