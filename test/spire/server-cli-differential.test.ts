/**
 * The real `spire-server` CLI run twice per command: against our server's admin socket and
 * against a real spire-server's, each with one real spire-agent attested. Outputs must be the
 * same once the values that differ by nature (entry and agent IDs, times, serial numbers) are
 * replaced by placeholders; the placeholders keep their format (a decimal serial stays one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { runBinary, spireBinaries, spireJoinToken, startSpireAgent, startSpireServer, type SpireAgentHandle, type SpireServerHandle } from './support/spire-processes.ts';

const UID = process.getuid?.() ?? 0;

interface Side {
  server: ServerHandle;
  agent: SpireAgentHandle;
  agentId: string;
}

let ours: Side;
let theirs: Side;
let spireServerBin: string;
/** A CA certificate file for `bundle set` (spire-server's own root, set as another trust domain's). */
let pemFile: string;
/** The same bundle as a SPIFFE bundle document with `spiffe_sequence` 5. */
let spiffeFile: string;

/** Replaces what differs between two servers by nature; keeps each value's format visible. */
function normalize(text: string): string {
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \w+/g, '<time>')
    .replace(/"\d{10}"/g, '"<unix time>"')
    .replace(/(Serial number\s+: )\d+/g, '$1<decimal>')
    .replace(/("x509svid_serial_number":")\d+"/g, '$1<decimal>"');
}

/** Runs the command on both sides (`AGENT` stands for that side's agent ID, `PEM` and `SPIFFE` for the bundle files). */
async function onBoth(args: string[]): Promise<{ ours: string; theirs: string }> {
  const run = async (side: Side): Promise<string> => {
    const argv = args.map((a) => (a === 'AGENT' ? side.agentId : a === 'PEM' ? pemFile : a === 'SPIFFE' ? spiffeFile : a));
    const r = await runBinary(spireServerBin, [...argv, '-socketPath', side.server.socketPath], 20_000, { TZ: 'UTC' });
    return normalize(`exit ${r.code}\n${r.stdout}${r.stderr}`);
  };
  const [o, t] = await Promise.all([run(ours), run(theirs)]);
  return { ours: o, theirs: t };
}

beforeAll(async () => {
  spireServerBin = (await spireBinaries()).server;
  const [ourServer, spireServer] = await Promise.all([startServerProcess({ trustDomain: 'example.org' }), startSpireServer({ trustDomain: 'example.org' })]);
  const side = async (server: ServerHandle, token: string, bundlePath: string): Promise<Side> => ({
    server,
    agent: await startSpireAgent({ server, joinToken: token, trustBundlePath: bundlePath }),
    agentId: `spiffe://example.org/spire/agent/join_token/${token}`,
  });
  pemFile = (spireServer as SpireServerHandle).bundlePath;
  const doc = JSON.parse((await spireServer.cli('bundle', 'show', '-format', 'spiffe')).stdout) as Record<string, unknown>;
  spiffeFile = join(spireServer.dir, 'bundle.spiffe.json');
  await writeFile(spiffeFile, JSON.stringify({ ...doc, spiffe_sequence: 5 }));
  [ours, theirs] = await Promise.all([
    side(ourServer, await generateJoinToken(ourServer), join(ourServer.dir, 'data', 'ca', 'bundle.pem')),
    side(spireServer, await spireJoinToken(spireServer), (spireServer as SpireServerHandle).bundlePath),
  ]);
});

afterAll(async () => {
  await Promise.all([ours?.agent.cleanup(), theirs?.agent.cleanup()]);
  await Promise.all([ours?.server.cleanup(), theirs?.server.cleanup()]);
});

const ENTRY = '11111111-1111-1111-1111-111111111111';
const NODE_ENTRY = '22222222-2222-2222-2222-222222222222';

/** In order: later commands see what earlier ones created. */
const COMMANDS: string[][] = [
  ['entry', 'create', '-parentID', 'AGENT', '-spiffeID', 'spiffe://example.org/w', '-selector', `unix:uid:${UID}`, '-entryID', ENTRY],
  ['entry', 'create', '-node', '-spiffeID', 'spiffe://example.org/nodes', '-selector', 'join_token:x', '-entryID', NODE_ENTRY],
  ['entry', 'create', '-parentID', 'AGENT', '-spiffeID', 'spiffe://example.org/w', '-selector', `unix:uid:${UID}`],
  ['entry', 'create', '-spiffeID', 'spiffe://example.org/x', '-selector', `unix:uid:${UID}`],
  ['entry', 'show'],
  ['entry', 'show', '-spiffeID', 'spiffe://example.org/w'],
  ['entry', 'show', '-entryID', ENTRY, '-output', 'json'],
  ['entry', 'show', '-selector', `unix:uid:${UID}`],
  ['entry', 'show', '-entryID', 'nope'],
  ['entry', 'update', '-entryID', ENTRY, '-parentID', 'AGENT', '-spiffeID', 'spiffe://example.org/w2', '-selector', `unix:uid:${UID}`, '-x509SVIDTTL', '120'],
  ['entry', 'count'],
  ['entry', 'delete', '-entryID', NODE_ENTRY],
  ['entry', 'count', '-output', 'json'],
  ['agent', 'list'],
  ['agent', 'list', '-output', 'json'],
  ['agent', 'count'],
  ['agent', 'show', '-spiffeID', 'AGENT'],
  ['agent', 'show', '-spiffeID', 'spiffe://example.org/spire/agent/join_token/none'],
  ['agent', 'evict', '-spiffeID', 'spiffe://example.org/spire/agent/join_token/none'],
  ['agent', 'ban', '-spiffeID', 'spiffe://example.org/spire/agent/join_token/none'],
  ['bundle', 'list'],
  ['bundle', 'set', '-id', 'spiffe://other.org', '-path', 'PEM'],
  ['bundle', 'list'],
  ['bundle', 'list', '-id', 'spiffe://other.org', '-format', 'spiffe'],
  ['bundle', 'set', '-id', 'spiffe://third.org', '-format', 'spiffe', '-path', 'SPIFFE'],
  ['bundle', 'list', '-id', 'spiffe://third.org', '-format', 'spiffe'],
  ['bundle', 'count'],
  ['bundle', 'delete', '-id', 'spiffe://third.org'],
  ['bundle', 'delete', '-id', 'spiffe://other.org'],
  ['bundle', 'delete', '-id', 'spiffe://other.org'],
  ['bundle', 'count'],
  ['token', 'generate', '-spiffeID', 'spiffe://example.org/host'],
  ['healthcheck'],
];

describe('the spire-server CLI prints the same against our admin socket as against spire-server', () => {
  it.each(COMMANDS.map((args) => [args.join(' '), args] as const))('spire-server %s', async (_name, args) => {
    const { ours: o, theirs: t } = await onBoth([...args]);
    // SPIRE_CLI_SHOW=1 prints what was compared.
    if (process.env['SPIRE_CLI_SHOW']) console.log(`$ spire-server ${args.join(' ')}\n${o}`);
    expect(o).toBe(t);
  });
});
