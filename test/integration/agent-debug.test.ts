/**
 * `spiffe-agent debug explain` and `debug workloads` (issue 14) against the real agent and
 * server processes, through the real CLI run as root and as other uids:
 * - an entitled process is explained with its entry and an OK verdict; a process of another
 *   uid with the `unix:uid` near miss and PermissionDenied "no identity issued" (exactly the
 *   Workload API's answer, which the same process also gets);
 * - only root and authorized delegates may ask (the admin socket is 0770: a caller in the
 *   agent's group that is neither is refused by the service);
 * - `debug workloads -watch` shows a workload's watch appear and disappear.
 *
 * Needs root (children run under other uids): in CI (CI=true) it is required, elsewhere the
 * suite is skipped without it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { generateJoinToken, NODE, REPO, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const WORKLOAD_ID = `spiffe://${TD}/workload`;
const DELEGATE_ID = `spiffe://${TD}/ops/debugger`;
const NOBODY = 65534;
const DELEGATE_UID = 65533;
const STRANGER = 65532;
const IN_CI = process.env['CI'] === 'true';
const isRoot = process.geteuid?.() === 0;
const AGENT_CLI = join(REPO, 'bin/spiffe-agent.js');

let server: ServerHandle;
let agent: AgentHandle;
let agentId: string;
let adminSocket: string;
const children = new Set<ChildProcess>();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `spiffe-agent <args>` as `uid`:`gid` (default root). */
async function cli(args: string[], ids: { uid: number; gid: number } = { uid: 0, gid: 0 }): Promise<Run> {
  const child = spawn(NODE, [AGENT_CLI, ...args], { ...ids, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  children.delete(child);
  return { code, stdout, stderr };
}

/** A long-running process of `uid`, to be named by PID. */
function sleeper(uid: number): ChildProcess {
  const child = spawn('sleep', ['300'], { uid, gid: uid, stdio: 'ignore' });
  children.add(child);
  return child;
}

describe.skipIf(!IN_CI && !isRoot)('debug explain and debug workloads over the admin socket', () => {
  beforeAll(async () => {
    server = await startServerProcess({ trustDomain: TD });
    agent = await startAgentProcess({ server, joinToken: await generateJoinToken(server), authorizedDelegates: [DELEGATE_ID] });
    adminSocket = agent.adminSocketPath;
    agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
    for (const [id, uid, hint] of [[WORKLOAD_ID, NOBODY, 'web'], [DELEGATE_ID, DELEGATE_UID, '']] as const) {
      const out = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', id, '-selector', `unix:uid:${uid}`, ...(hint === '' ? [] : ['-hint', hint]));
      expect(out.stderr).toBe('');
    }
    // Synced, and the workload's SVID cached (the agent preloads it).
    await eventually(async () => {
      const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-selector', `unix:uid:${NOBODY}`, '-output', 'json']);
      const parsed = JSON.parse(run.stdout || '{}') as { matched?: Array<{ svid_expires_at?: string }> };
      if (Number(parsed.matched?.[0]?.svid_expires_at ?? 0) === 0) throw new Error(`not yet: ${run.stdout}${run.stderr}`);
    }, 30_000);
  }, 120_000);

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await agent?.cleanup();
    await server?.cleanup();
  });

  it('explains an entitled process: its unix selectors, its entry with hint and cached SVID, verdict OK', async () => {
    const workload = sleeper(NOBODY);
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-pid', String(workload.pid)]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`Process ${workload.pid} (uid ${NOBODY}, gid ${NOBODY})`);
    expect(lines[1]).toMatch(new RegExp(`^  process +\\d+\\.\\d\\d ms  source=/proc/${workload.pid}/stat start_time=\\d+$`));
    expect(lines[2]).toMatch(/^ {2}liveness check +\d+\.\d\d ms {2}same_process=true$/);
    expect(lines).toContain(`  unix:uid:${NOBODY}`);
    expect(lines).toContain('Matched entries (1):');
    expect(lines).toContain(`  ${WORKLOAD_ID}`);
    expect(lines).toContain('    Hint       : web');
    expect(lines).toContain(`    Selectors  : unix:uid:${NOBODY}`);
    expect(lines.find((l) => l.startsWith('    SVID       : '))).toMatch(/^ {4}SVID {7}: cached, expires \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC \(in \d+m\d+s\)$/);
    expect(lines.at(-1)).toBe('Verdict: OK (1 X509-SVID)');
  });

  it('explains a process of another uid with the unix:uid near miss and the Workload API\'s exact refusal', async () => {
    const stranger = sleeper(STRANGER);
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-pid', String(stranger.pid)]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    const text = run.stdout.trimEnd();
    expect(text).toContain('Matched entries: none');
    // Both entries miss by their uid; ranked by SPIFFE ID.
    expect(text).toMatch(new RegExp(`Nearest misses:\n  ${DELEGATE_ID} \\(entry [0-9a-f-]+\\)\n    unix:uid:${STRANGER} found, entry wants unix:uid:${DELEGATE_UID}\n  ${WORKLOAD_ID} \\(entry [0-9a-f-]+\\)\n    unix:uid:${STRANGER} found, entry wants unix:uid:${NOBODY}\n`));
    expect(text.split('\n').at(-1)).toBe('Verdict: PermissionDenied "no identity issued"');
    // What the Workload API itself answers a process of that uid.
    const from = agent.logs().length;
    const fetched = await cli(['api', 'fetch', 'x509', '-socketPath', agent.socketPath], { uid: STRANGER, gid: STRANGER });
    expect([fetched.code, fetched.stderr.trim()]).toEqual([1, 'rpc error: code = PermissionDenied desc = no identity issued']);
    // The agent's (rate-limited) line for that refusal names the nearest miss too.
    await agent.waitForLog(new RegExp(`"error":"no identity issued","nearest_miss":"${DELEGATE_ID}: unix:uid:${STRANGER} found, entry wants unix:uid:${DELEGATE_UID}"`), 5_000, from);
  });

  it('-output json gives the same facts for scripts', async () => {
    // -timeout 0: no deadline, as for the api commands.
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-selector', `unix:uid:${STRANGER}`, '-output', 'json', '-timeout', '0']);
    expect(run.code).toBe(0);
    const r = JSON.parse(run.stdout) as { selectors: string[]; matched?: unknown[]; near_misses: Array<{ entry: { spiffe_id: string }; missing: Array<{ wanted: string; found: string[] }> }>; verdict: { code: number; code_name: string; message: string } };
    expect(r.selectors).toEqual([`unix:uid:${STRANGER}`]);
    expect(r.matched ?? []).toEqual([]);
    expect(r.near_misses.map((m) => [m.entry.spiffe_id, m.missing])).toEqual([
      [DELEGATE_ID, [{ wanted: `unix:uid:${DELEGATE_UID}`, found: [`unix:uid:${STRANGER}`] }]],
      [WORKLOAD_ID, [{ wanted: `unix:uid:${NOBODY}`, found: [`unix:uid:${STRANGER}`] }]],
    ]);
    expect(r.verdict).toEqual({ code: 7, code_name: 'PermissionDenied', message: 'no identity issued' });
  });

  it.each([
    { who: 'a caller in the agent group that is neither root nor a delegate is refused', uid: STRANGER, code: 1, out: 'rpc error: code = PermissionDenied desc = debug API: only local root or an authorized delegate may use it' },
    { who: 'an authorized delegate may ask', uid: DELEGATE_UID, code: 0, out: '' },
  ])('$who', async ({ uid, code, out }) => {
    // gid 0: the admin socket is 0770 root:root, so only its group gets through the file mode.
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-selector', `unix:uid:${NOBODY}`], { uid, gid: 0 });
    expect([run.code, run.stderr.trim()]).toEqual([code, out]);
  });

  it('explains nothing for a PID that does not exist', async () => {
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-pid', '4194304']);
    expect([run.code, run.stderr.trim()]).toEqual([1, 'rpc error: code = NotFound desc = process 4194304: could not read /proc/4194304: ENOENT']);
  });

  it('debug workloads -watch shows a workload appear with its stream and SPIFFE ID, then disappear', async () => {
    const watcher = spawn(NODE, [AGENT_CLI, 'debug', 'workloads', '-socketPath', adminSocket, '-watch', '-interval', '200ms'], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(watcher);
    let screen = '';
    watcher.stdout?.on('data', (d: Buffer) => (screen += d.toString()));
    const frames = (): string[] => screen.split('\x1b[H\x1b[2J').filter((f) => f !== '');
    const workload = spawn(NODE, [AGENT_CLI, 'api', 'watch', '-socketPath', agent.socketPath], { uid: NOBODY, gid: NOBODY, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(workload);
    const row = new RegExp(`^${workload.pid} +${NOBODY} +- +- +1 +1 +\\d+\\.\\d\\d ms +[\\d.]+ (B|KiB) +in \\d+m\\d+s +${WORKLOAD_ID}$`, 'm');
    await eventually(async () => {
      if (!row.test(frames().at(-1) ?? '')) throw new Error(`not shown yet: ${frames().at(-1) ?? ''}`);
    }, 20_000, 100);
    workload.kill('SIGTERM');
    await once(workload, 'close');
    children.delete(workload);
    await eventually(async () => {
      const last = frames().at(-1) ?? '';
      if (last.includes(`\n${workload.pid} `)) throw new Error(`still shown: ${last}`);
    }, 20_000, 100);
    expect(frames().at(-1)?.split('\n')[1]).toBe('PID  UID  POD  CONTAINER  STREAMS  CALLS  ATTEST  SENT  SVID EXPIRES  SPIFFE IDS');
    watcher.kill('SIGINT');
    const [code] = (await once(watcher, 'close')) as [number | null];
    children.delete(watcher);
    expect(code).toBe(0);
  }, 60_000);

  it('after a restart with the server down, explains from the restored cache: the entry matched, verdict OK', async () => {
    await server.stop();
    await agent.stop();
    await agent.start();
    const run = await cli(['debug', 'explain', '-socketPath', adminSocket, '-selector', `unix:uid:${NOBODY}`]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout).toContain(`Matched entries (1):\n  ${WORKLOAD_ID}\n`);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('Verdict: OK (1 X509-SVID)');
  });
});
