/**
 * The real `spire-agent api` CLI run against two Workload API sockets: our agent's and a real
 * spire-agent's, both attested to one real spire-server and entitled to the same SPIFFE ID.
 * Outputs must be the same once what differs by nature (timings, validity times, tokens,
 * certificates, keys) is replaced by placeholders; the JWT bundle, which both agents get from
 * the same server, is compared as printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { runBinary, spireBinaries, spireJoinToken, startSpireAgent, startSpireServer, type SpireAgentHandle, type SpireServerHandle } from './support/spire-processes.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/workload`;

let server: SpireServerHandle;
let ours: AgentHandle;
let theirs: SpireAgentHandle;
let spireAgentBin: string;
/** A JWT-SVID minted through spire-agent (audience `x`), for the validate commands. */
let token: string;

/**
 * Sorts the members of each JSON object printed one member a line. The JWKS our agent serves
 * lists a key's members as `kty, x, y, crv, kid` (Node's JWK export, then the kid), SPIRE's as
 * `kty, kid, crv, x, y` (go-jose's order): the same JSON, not the same bytes.
 */
function sortObjectMembers(text: string): string {
  return text.replace(/\{\n((?:[ \t]+"[^"\n]+": [^\n]*\n)+)([ \t]*)\}/g, (_m, body: string, indent: string) => {
    const members = body.trimEnd().split('\n').map((l) => l.replace(/,$/, '')).sort();
    return `{\n${members.join(',\n')}\n${indent}}`;
  });
}

/** Tokens derived from the real one, by name. */
const VARIANTS: Record<string, (t: string) => string> = {
  TOKEN: (t) => t,
  // The signature's first byte changed: the signature no longer verifies.
  TAMPERED: (t) => {
    const [h, p, sig] = t.split('.') as [string, string, string];
    return `${h}.${p}.${sig.startsWith('A') ? 'B' : 'A'}${sig.slice(1)}`;
  },
  // A header naming a key the bundle does not have.
  UNKNOWN_KID: (t) => {
    const [h, p, sig] = t.split('.') as [string, string, string];
    const header = { ...(JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>), kid: 'not-a-key' };
    return `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${p}.${sig}`;
  },
  // alg "none".
  ALG_NONE: (t) => {
    const [, p] = t.split('.') as [string, string];
    return `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'k', typ: 'JWT' })).toString('base64url')}.${p}.`;
  },
};

function normalize(text: string): string {
  return sortObjectMembers(text)
    .replace(/after [\d.]+(?:ns|µs|us|ms|s)\b/g, 'after <duration>')
    .replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \w+/g, '<time>')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>')
    .replace(/"(iat|exp)":\s*\d+/g, '"$1": <unix time>');
}

async function onBoth(args: string[]): Promise<{ ours: string; theirs: string }> {
  const run = async (socketPath: string): Promise<string> => {
    const argv = args.map((a) => VARIANTS[a]?.(token) ?? a);
    const r = await runBinary(spireAgentBin, ['api', ...argv, '-socketPath', socketPath], 20_000, { TZ: 'UTC' });
    return normalize(`exit ${r.code}\n${r.stdout}${r.stderr}`);
  };
  const [o, t] = await Promise.all([run(ours.socketPath), run(theirs.socketPath)]);
  return { ours: o, theirs: t };
}

beforeAll(async () => {
  spireAgentBin = (await spireBinaries()).agent;
  server = await startSpireServer({ trustDomain: TD });
  const [ourToken, theirToken] = [await spireJoinToken(server), await spireJoinToken(server)];
  [ours, theirs] = await Promise.all([
    startAgentProcess({ server, joinToken: ourToken, trustBundlePath: server.bundlePath, syncInterval: '1s' }),
    startSpireAgent({ server, joinToken: theirToken, trustBundlePath: server.bundlePath }),
  ]);
  for (const t of [ourToken, theirToken]) {
    const r = await server.cli('entry', 'create', '-parentID', `spiffe://${TD}/spire/agent/join_token/${t}`, '-spiffeID', WORKLOAD, '-selector', `unix:uid:${UID}`);
    if (r.code !== 0) throw new Error(`entry create: ${r.stdout}${r.stderr}`);
  }
  // Both serve the entry (spire-server reloads its entry cache every 5 s by default).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const codes = await Promise.all([ours.socketPath, theirs.socketPath].map(async (s) => (await runBinary(spireAgentBin, ['api', 'fetch', 'x509', '-socketPath', s])).code));
    if (codes.every((c) => c === 0)) break;
    if (Date.now() > deadline) throw new Error(`the entry is not served by both agents within 30 s: exit codes ${codes.join(', ')}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const jwt = await runBinary(spireAgentBin, ['api', 'fetch', 'jwt', '-audience', 'x', '-socketPath', theirs.socketPath]);
  token = /^token\([^)]*\):\n\t(\S+)\n/.exec(jwt.stdout)?.[1] as string;
  if (token === undefined) throw new Error(`no token from spire-agent: ${jwt.stdout}${jwt.stderr}`);
});

afterAll(async () => {
  await Promise.all([ours?.cleanup(), theirs?.cleanup()]);
  await server?.cleanup();
});

const COMMANDS: string[][] = [
  ['fetch', 'x509'],
  ['fetch', 'jwt', '-audience', 'x'],
  ['fetch', 'jwt', '-audience', 'x', '-spiffeID', WORKLOAD],
  ['fetch', 'jwt', '-audience', 'x', '-spiffeID', `spiffe://${TD}/not-mine`],
  ['fetch', 'jwt'],
  ['validate', 'jwt', '-audience', 'x', '-svid', 'TOKEN'],
  ['validate', 'jwt', '-audience', 'y', '-svid', 'TOKEN'],
  ['validate', 'jwt', '-audience', 'x', '-svid', 'not-a-jwt'],
  ['validate', 'jwt', '-audience', 'x', '-svid', 'TAMPERED'],
  ['validate', 'jwt', '-audience', 'x', '-svid', 'UNKNOWN_KID'],
  ['validate', 'jwt', '-audience', 'x', '-svid', 'ALG_NONE'],
  ['validate', 'jwt', '-audience', 'x'],
];

describe('spire-agent api prints the same against our agent as against spire-agent', () => {
  it.each(COMMANDS.map((args) => [args.join(' '), args] as const))('spire-agent api %s', async (_name, args) => {
    const { ours: o, theirs: t } = await onBoth([...args]);
    // SPIRE_CLI_SHOW=1 prints what was compared.
    if (process.env['SPIRE_CLI_SHOW']) console.log(`$ spire-agent api ${args.join(' ')}\n${o}`);
    expect(o).toBe(t);
  });
});
