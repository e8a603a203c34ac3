/**
 * `npm start` (scripts/quickstart.ts) as a user runs it: it prints SPIFFE_ENDPOINT_SOCKET once
 * the socket serves the user's SVID, the printed commands work, and `debug explain -pid`
 * explains an entitled process with its entry and a process of another uid with the
 * `unix:uid` near miss (issue 14). Ctrl-C stops both processes.
 *
 * Runs in its own directory (QUICKSTART_DIR) on a free port. Needs root to run a process as
 * another uid: in CI (CI=true) required, elsewhere that case is skipped without it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, NODE, REPO } from '../support/server-process.ts';

const IN_CI = process.env['CI'] === 'true';
const isRoot = process.geteuid?.() === 0;
const uid = process.getuid?.() ?? 0;
const OTHER_UID = uid === 65534 ? 65533 : 65534;
const AGENT_CLI = join(REPO, 'bin/spiffe-agent.js');

let dir: string;
let quickstart: ChildProcess;
let stdout = '';
const children = new Set<ChildProcess>();

async function cli(args: string[], env: Record<string, string> = {}, ids?: { uid: number; gid: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(NODE, [AGENT_CLI, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  children.delete(child);
  return { code, stdout: out, stderr: err };
}

/** The command line the quickstart printed for `what` (e.g. `debug explain`), as argv after the CLI path. */
function printed(what: string): string[] {
  const line = stdout.split('\n').find((l) => l.includes(`bin/spiffe-agent.js ${what}`));
  if (line === undefined) throw new Error(`the quickstart printed no "${what}" command:\n${stdout}`);
  return line.trim().split(/\s+/).slice(2);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sna-quickstart-'));
  quickstart = spawn(NODE, [join(REPO, 'scripts/quickstart.ts')], {
    cwd: REPO,
    env: { ...process.env, QUICKSTART_DIR: dir, SERVER_PORT: String(await freePort()) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  quickstart.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SPIFFE_ENDPOINT_SOCKET within 60 s:\n${stdout}\n${stderr}`)), 60_000);
    quickstart.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('Ctrl-C stops both.')) {
        clearTimeout(timer);
        resolve();
      }
    });
    quickstart.once('exit', (code) => reject(new Error(`quickstart exited (${code}):\n${stdout}\n${stderr}`)));
  });
}, 90_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (quickstart?.exitCode === null) {
    quickstart.kill('SIGKILL');
    await once(quickstart, 'exit');
  }
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('npm start (the quickstart)', () => {
  it('prints SPIFFE_ENDPOINT_SOCKET first, and the printed api fetch x509 gets the user\'s SVID', async () => {
    expect(stdout.split('\n')[0]).toBe(`SPIFFE_ENDPOINT_SOCKET=unix://${join(dir, 'agent', 'public', 'api.sock')}`);
    const run = await cli(printed('api fetch x509'), { SPIFFE_ENDPOINT_SOCKET: `unix://${join(dir, 'agent', 'public', 'api.sock')}` });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`SPIFFE ID:\t\tspiffe://example.org/user/${uid}`);
  });

  it('debug explain -pid of an entitled process shows its entry and verdict OK', async () => {
    const args = printed('debug explain');
    const self = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.add(self);
    const run = await cli([...args.slice(0, -1), String(self.pid)]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout).toContain(`Matched entries (1):\n  spiffe://example.org/user/${uid}\n`);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('Verdict: OK (1 X509-SVID)');
  });

  it.skipIf(!IN_CI && !isRoot)('debug explain -pid of another uid\'s process shows the unix:uid near miss', async () => {
    const args = printed('debug explain');
    const other = spawn('sleep', ['60'], { uid: OTHER_UID, gid: OTHER_UID, stdio: 'ignore' });
    children.add(other);
    const run = await cli([...args.slice(0, -1), String(other.pid)]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout).toMatch(new RegExp(`Nearest misses:\\n  spiffe://example\\.org/user/${uid} \\(entry [0-9a-f-]+\\)\\n    unix:uid:${OTHER_UID} found, entry wants unix:uid:${uid}\\n`));
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('Verdict: PermissionDenied "no identity issued"');
  });

  it('Ctrl-C stops both and exits 0', async () => {
    quickstart.kill('SIGINT');
    const [code] = (await once(quickstart, 'exit')) as [number | null];
    expect(code).toBe(0);
  });
});
