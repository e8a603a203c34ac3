/**
 * The real `spire-server` CLI run twice per command: against our server's admin socket and
 * against a real spire-server's, each with one real spire-agent attested. Outputs must be the
 * same once the values that differ by nature (entry and agent IDs, times, serial numbers,
 * minted keys, certificates and tokens) are replaced by placeholders; the placeholders keep
 * their format (a decimal serial stays one). Then `x509 mint` / `jwt mint` once more, our
 * `spiffe-server` CLI and the real one against the real spire-server: same output; and what
 * they mint verifies against that server's bundle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { join } from 'node:path';
import { generateJoinToken, NODE, SERVER_BIN, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { runBinary, spireBinaries, spireJoinToken, startSpireAgent, startSpireServer, type SpireAgentHandle, type SpireServerHandle } from './support/spire-processes.ts';

const UID = process.getuid?.() ?? 0;

interface Side {
  server: ServerHandle;
  agent: SpireAgentHandle;
  agentId: string;
  /** A directory for `-write` (`DIR` in commands). */
  dir: string;
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
    .replace(/("x509svid_serial_number":")\d+"/g, '$1<decimal>"')
    .replace(/-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]+?-----END \1-----\n/g, '<$1 PEM>\n')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>')
    .replace(/"[A-Za-z0-9+/]{40,}={0,2}"/g, '"<base64>"')
    .replace(/"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"/g, '"<rfc3339>"')
    .replace(/\/tmp\/sna-cli-[\w]+/g, '<dir>');
}

/** Runs the command on both sides (`AGENT` stands for that side's agent ID, `PEM` and `SPIFFE` for the bundle files). */
async function onBoth(args: string[]): Promise<{ ours: string; theirs: string }> {
  const run = async (side: Side): Promise<string> => {
    const argv = args.map((a) => (a === 'AGENT' ? side.agentId : a === 'PEM' ? pemFile : a === 'SPIFFE' ? spiffeFile : a.replace('DIR', side.dir)));
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
    dir: await mkdtemp(join(tmpdir(), 'sna-cli-')),
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
  await Promise.all([ours, theirs].map((side) => (side ? rm(side.dir, { recursive: true, force: true }) : undefined)));
});

const ENTRY = '11111111-1111-1111-1111-111111111111';
const NODE_ENTRY = '22222222-2222-2222-2222-222222222222';

/** Mint commands (no state): run on both servers, and with both CLIs against spire-server. */
const MINT_COMMANDS: string[][] = [
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/minted'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/minted', '-dns', 'a.example.org', '-dns', '*.b.example.org', '-ttl', '10m', '-output', 'json'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/minted', '-write', 'DIR'],
  ['x509', 'mint'],
  ['x509', 'mint', '-spiffeID', 'spiffe://other.org/minted'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/spire/agent/x'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/w', '-dns', '*.*.example.org'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/w', '-dns', 'a.*.example.org'],
  ['x509', 'mint', '-spiffeID', 'spiffe://example.org/w', '-dns', '*.example.org', '-dns', 'a.example.org'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://example.org/minted', '-audience', 'a'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://example.org/minted', '-audience', 'a', '-audience', 'b', '-ttl', '1m', '-output', 'json'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://example.org/minted', '-audience', 'a', '-write', 'DIR/token'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://example.org/minted'],
  ['jwt', 'mint', '-audience', 'a'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://other.org/w', '-audience', 'a'],
  ['jwt', 'mint', '-spiffeID', 'spiffe://example.org/spire/server', '-audience', 'a'],
];

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
  ...MINT_COMMANDS,
];

describe('the spire-server CLI prints the same against our admin socket as against spire-server', () => {
  it.each(COMMANDS.map((args) => [args.join(' '), args] as const))('spire-server %s', async (_name, args) => {
    const { ours: o, theirs: t } = await onBoth([...args]);
    // SPIRE_CLI_SHOW=1 prints what was compared.
    if (process.env['SPIRE_CLI_SHOW']) console.log(`$ spire-server ${args.join(' ')}\n${o}`);
    expect(o).toBe(t);
  });
});

describe('our spiffe-server x509 mint / jwt mint print what spire-server prints, against spire-server', () => {
  it.each(MINT_COMMANDS.map((args) => [args.join(' '), args] as const))('%s', async (_name, args) => {
    const run = async (cli: 'ours' | 'theirs'): Promise<string> => {
      const dir = join(theirs.dir, cli);
      await mkdir(dir, { recursive: true });
      const argv = [...args.map((a) => a.replace('DIR', dir)), '-socketPath', theirs.server.socketPath];
      const r = cli === 'ours' ? await runBinary(NODE, [SERVER_BIN, ...argv], 20_000, { TZ: 'UTC' }) : await runBinary(spireServerBin, argv, 20_000, { TZ: 'UTC' });
      return normalize(`exit ${r.code}\n${r.stdout}${r.stderr}`).replaceAll(`<dir>/${cli}`, '<dir>');
    };
    const [o, t] = await Promise.all([run('ours'), run('theirs')]);
    if (process.env['SPIRE_CLI_SHOW']) console.log(`$ spiffe-server ${args.join(' ')}\n${o}`);
    expect(o).toBe(t);
  });

  it('the X509-SVID our CLI mints from spire-server chains to its bundle and matches its key; the files have spire-server\'s modes', async () => {
    const dir = join(theirs.dir, 'verify');
    await mkdir(dir, { recursive: true });
    const r = await runBinary(NODE, [SERVER_BIN, 'x509', 'mint', '-spiffeID', 'spiffe://example.org/verified', '-dns', 'v.example.org', '-write', dir, '-socketPath', theirs.server.socketPath]);
    expect(r.code).toBe(0);
    const chain = decodePemCertificates(await readFile(join(dir, 'svid.pem'), 'utf8'));
    const roots = decodePemCertificates(await readFile((theirs.server as SpireServerHandle).bundlePath, 'utf8'));
    expect(decodePemCertificates(await readFile(join(dir, 'bundle.pem'), 'utf8'))).toEqual(roots);
    expect(checkX509SvidProfile(chain, { expectedId: 'spiffe://example.org/verified', bundleRootsDer: roots })).toEqual([]);
    expect(new X509Certificate(chain[0] as Buffer).checkPrivateKey(createPrivateKey(await readFile(join(dir, 'key.pem'))))).toBe(true);
    const modes = await Promise.all(['svid.pem', 'key.pem', 'bundle.pem'].map(async (f) => (await stat(join(dir, f))).mode & 0o777));
    expect(modes).toEqual([0o644, 0o600, 0o644]);
  });

  it('the JWT-SVID our CLI mints from spire-server verifies against its JWT keys', async () => {
    const r = await runBinary(NODE, [SERVER_BIN, 'jwt', 'mint', '-spiffeID', 'spiffe://example.org/verified', '-audience', 'sts', '-socketPath', theirs.server.socketPath]);
    expect(r.code).toBe(0);
    const doc = JSON.parse((await theirs.server.cli('bundle', 'show', '-format', 'spiffe')).stdout) as { keys: (JWK & { use: string })[] };
    // jose skips keys whose "use" is not "sig"; SPIFFE bundles say "jwt-svid".
    const jwks = createLocalJWKSet({ keys: doc.keys.filter((k) => k.use === 'jwt-svid').map(({ use: _use, ...k }) => k) });
    const { payload } = await jwtVerify(r.stdout.trim(), jwks, { audience: 'sts' });
    expect(payload.sub).toBe('spiffe://example.org/verified');
  });
});
