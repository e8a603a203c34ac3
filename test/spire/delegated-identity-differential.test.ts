/**
 * The admin socket side by side with the real spire-agent's: both agents attested to one real
 * spire-server, both with admin_socket_path and the same authorized_delegates, and the same
 * entries under each (a delegate for root, a workload for uid 65534). The spire-api-sdk Go
 * client (test/support/go/delegate-client) runs the same calls against both admin sockets;
 * what it prints must be the same once what differs by nature (certificates, serials, tokens,
 * times, the agents' own IDs) is replaced by placeholders. Bundles, which both agents get from
 * the same server, are compared as received.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { buildGoProgram, detectGo } from '../support/interop-builds.ts';
import { spireJoinToken, startSpireAgent, startSpireServer, type SpireAgentHandle, type SpireServerHandle } from './support/spire-processes.ts';

const TD = 'example.org';
const DELEGATE = `spiffe://${TD}/delegate`;
const WORKLOAD = `spiffe://${TD}/workload`;
const NOBODY = 65534;

let server: SpireServerHandle;
let ours: AgentHandle;
let theirs: SpireAgentHandle;
let dirs: string[] = [];
const sockets: { ours: string; theirs: string } = { ours: '', theirs: '' };
const agentIds: { ours: string; theirs: string } = { ours: '', theirs: '' };
let clientBin: string;
let sleeper: ChildProcess;
let deadPid: number;

type Line = Record<string, unknown>;

async function client(socket: string, args: string[], ids: { uid: number; gid: number } = { uid: 0, gid: 0 }): Promise<Line[]> {
  const child = spawn(clientBin, ['-socket', socket, '-timeout', '20s', ...args], { ...ids, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  const lines = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
  // Every answer, error included, is a JSON line: none means the client itself failed (a usage
  // error, a crash), which would otherwise compare equal on both sides.
  if (lines.length === 0) throw new Error(`delegate-client ${args.join(' ')} printed no answer (exit ${code})`);
  return lines;
}

/** Replaces what differs by nature between two agents' answers. */
function normalize(lines: Line[], agentId: string, socket: string): unknown {
  return JSON.parse(
    JSON.stringify(lines, (key, value: unknown) => {
      if (key === 'chain') return `<${(value as string[]).length} certificates>`;
      if (key === 'serial' || key === 'token') return `<${key}>`;
      if (['expires_at', 'issued_at', 'uptime', 'last_sync_success'].includes(key)) return `<${key}>`;
      if (key === 'keys' && Array.isArray(value)) return [...(value as Array<{ kid: string }>)].sort((a, b) => a.kid.localeCompare(b.kid));
      if (key === 'bundles' && value !== null && typeof value === 'object') {
        return Object.fromEntries(Object.entries(value as Record<string, string>).map(([td, jwks]) => [td, JSON.parse(jwks) as unknown]));
      }
      if (typeof value === 'string' && value === agentId.slice(`spiffe://${TD}`.length)) return '<agent path>';
      if (typeof value === 'string' && value.includes(socket)) return value.replaceAll(socket, '<admin socket>');
      return value;
    }),
  );
}

async function onBoth(args: string[], ids?: { uid: number; gid: number }): Promise<{ ours: unknown; theirs: unknown }> {
  const [o, t] = await Promise.all([client(sockets.ours, args, ids), client(sockets.theirs, args, ids)]);
  return { ours: normalize(o, agentIds.ours, sockets.ours), theirs: normalize(t, agentIds.theirs, sockets.theirs) };
}

beforeAll(async () => {
  clientBin = await buildGoProgram(detectGo(), 'delegate-client');
  server = await startSpireServer({ trustDomain: TD });
  for (const who of ['ours', 'theirs'] as const) {
    const dir = await mkdtemp(join(tmpdir(), `sna-admin-${who}-`));
    await chmod(dir, 0o755);
    dirs.push(dir);
    sockets[who] = join(dir, 'admin.sock');
  }
  const admin = (socket: string): string => `  admin_socket_path = "${socket}"\n  authorized_delegates = ["${DELEGATE}"]`;
  const [ourToken, theirToken] = [await spireJoinToken(server), await spireJoinToken(server)];
  [ours, theirs] = await Promise.all([
    startAgentProcess({ server, joinToken: ourToken, trustBundlePath: server.bundlePath, syncInterval: '1s', extraAgent: admin(sockets.ours) }),
    startSpireAgent({ server, joinToken: theirToken, trustBundlePath: server.bundlePath, extraAgent: admin(sockets.theirs) }),
  ]);
  agentIds.ours = `spiffe://${TD}/spire/agent/join_token/${ourToken}`;
  agentIds.theirs = `spiffe://${TD}/spire/agent/join_token/${theirToken}`;
  for (const parent of [agentIds.ours, agentIds.theirs]) {
    for (const [id, selector, hint] of [[DELEGATE, 'unix:uid:0', 'delegate'], [WORKLOAD, `unix:uid:${NOBODY}`, 'web']] as const) {
      const r = await server.cli('entry', 'create', '-parentID', parent, '-spiffeID', id, '-selector', selector, '-hint', hint);
      if (r.code !== 0) throw new Error(`entry create: ${r.stdout}${r.stderr}`);
    }
  }
  sleeper = spawn('sleep', ['300'], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
  const gone = spawn('true', [], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
  deadPid = gone.pid as number;
  await once(gone, 'exit');
  // Both agents serve both entries (spire-server reloads its entry cache every 5 s by default).
  const deadline = Date.now() + 60_000;
  for (;;) {
    const both = await Promise.all([sockets.ours, sockets.theirs].map((s) => client(s, ['x509', '-selector', `unix:uid:${NOBODY}`])));
    if (both.every((lines) => (lines[0]?.['svids'] as unknown[] | undefined)?.length === 1)) break;
    if (Date.now() > deadline) throw new Error(`the entries are not served by both agents within 60 s: ${JSON.stringify(both)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}, 180_000);

afterAll(async () => {
  sleeper?.kill('SIGKILL');
  await Promise.all([ours?.cleanup(), theirs?.cleanup()]);
  await server?.cleanup();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  dirs = [];
});

describe('the spire-api-sdk client gets the same answers from our admin socket as from spire-agent’s', () => {
  const cases: Array<[string, () => string[], { uid: number; gid: number }?]> = [
    ['x509 by selectors', () => ['x509', '-selector', `unix:uid:${NOBODY}`]],
    ['x509 by PID', () => ['x509', '-pid', String(sleeper.pid)]],
    ['x509 by the PID of a process that has exited', () => ['x509', '-pid', String(deadPid)]],
    ['x509 by selectors no entry matches', () => ['x509', '-selector', 'unix:uid:4242']],
    ['x509 with selectors and a PID', () => ['x509', '-selector', `unix:uid:${NOBODY}`, '-pid', '1']],
    ['x509 with neither', () => ['x509']],
    ['x509 with a selector without value', () => ['x509', '-selector', 'unix:']],
    ['jwt by selectors', () => ['jwt', '-audience', 'x', '-selector', `unix:uid:${NOBODY}`]],
    ['jwt by PID', () => ['jwt', '-audience', 'x', '-pid', String(sleeper.pid)]],
    ['jwt without audience', () => ['jwt', '-selector', `unix:uid:${NOBODY}`]],
    ['jwt for a workload without entries', () => ['jwt', '-audience', 'x', '-selector', 'unix:uid:4242']],
    ['X.509 bundles', () => ['bundles']],
    ['JWT bundles', () => ['jwtbundles']],
    ['x509 from a caller that is not a delegate', () => ['x509', '-selector', `unix:uid:${NOBODY}`], { uid: NOBODY, gid: 0 }],
    ['bundles from a caller without entries', () => ['bundles'], { uid: 65532, gid: 0 }],
    ['jwt from a caller without entries', () => ['jwt', '-audience', 'x', '-selector', `unix:uid:${NOBODY}`], { uid: 65532, gid: 0 }],
    ['getinfo from a user outside the socket’s group', () => ['getinfo'], { uid: NOBODY, gid: NOBODY }],
    // Last: GetInfo counts the JWT-SVIDs the calls above cached.
    ['getinfo', () => ['getinfo']],
  ];
  it.each(cases)('%s', async (_name, args, ids) => {
    const { ours: o, theirs: t } = await onBoth(args(), ids);
    // SPIRE_CLI_SHOW=1 prints what was compared.
    if (process.env['SPIRE_CLI_SHOW']) console.log(`$ delegate-client ${args().join(' ')}\n${JSON.stringify(o)}`);
    expect(o).toEqual(t);
  });
});
