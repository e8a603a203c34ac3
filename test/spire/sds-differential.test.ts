/**
 * Envoy SDS v3 on our agent and on a real spire-agent v1.13.3, both attested to one real
 * spire-server, driven by the same Go client (go-control-plane's generated protos,
 * test/support/go/sds-client) running the same script as the same uid: every response and
 * status must be the same once what differs by nature (nonces, SVID serial numbers) is replaced
 * by placeholders. Covers versions and nonces across ACK, NACK, subscription changes and stale
 * nonces, the default names, federated bundles, the SPIFFE validator and trusted_ca forms,
 * refusals, FetchSecrets, and DeltaSecrets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { makeTestCa } from '../support/ca-fixtures.ts';
import { detectGo } from '../support/interop-builds.ts';
import { buildSdsClient, SdsClient, type SdsEvent } from '../support/sds-client.ts';
import { spireJoinToken, startSpireAgent, startSpireServer, type SpireAgentHandle, type SpireServerHandle } from './support/spire-processes.ts';

const TD = 'example.org';
const FED = 'fed.org';
const base = 50_000 + randomInt(10_000);
const UID = { a: base, nobody: base + 1 };
const ID_A = `spiffe://${TD}/sds/a`;

let server: SpireServerHandle;
let ours: AgentHandle;
let theirs: SpireAgentHandle;
let bin: string;
const clients: SdsClient[] = [];

/** Nonces and serial numbers differ by nature; everything else must be equal. */
function normalize(e: SdsEvent): SdsEvent {
  return JSON.parse(
    JSON.stringify(e)
      .replace(/"nonce":"[0-9a-f]{8}"/g, '"nonce":"<nonce>"')
      .replace(/"serial":"\d+"/g, '"serial":"<serial>"'),
  ) as SdsEvent;
}

async function client(socketPath: string, uid: number): Promise<SdsClient> {
  const c = await SdsClient.start(bin, socketPath, { uid, gid: uid });
  clients.push(c);
  return c;
}

type Script = (c: SdsClient) => Promise<SdsEvent[]>;

/** Runs a script on a fresh client against each agent; resolves with both transcripts, normalized. */
async function onBoth(uid: number, script: Script): Promise<{ ours: SdsEvent[]; theirs: SdsEvent[] }> {
  const [o, t] = await Promise.all([client(ours.socketPath, uid), client(theirs.socketPath, uid)]);
  const [a, b] = await Promise.all([script(o), script(t)]);
  return { ours: a.map(normalize), theirs: b.map(normalize) };
}

const node = { id: 'envoy', build_version: [1, 30, 0] };

const SCRIPTS: Array<[string, number, Script]> = [
  [
    'a stream: request, ACK, more names, NACK, changed names, stale nonce, a refused name',
    UID.a,
    async (c) => {
      const out: SdsEvent[] = [];
      await c.send({ names: ['default'], node });
      out.push(await c.recv());
      out.push(await c.run({ op: 'ack' }));
      await c.send({ names: ['default', 'ALL'], version: out[0]?.['version'] as string, nonce: out[0]?.['nonce'] as string });
      const second = await c.recv();
      out.push(second);
      out.push(await c.run({ op: 'ack' }));
      out.push(await c.run({ op: 'nack', error: 'rejected' }));
      // Not answered by a resend: the next response answers the changed names.
      await c.send({ names: ['ROOTCA', 'default', `spiffe://${FED}`], version: second['version'] as string, nonce: second['nonce'] as string });
      const third = await c.recv();
      out.push(third);
      // An older nonce: ignored whole.
      await c.send({ names: [ID_A], version: third['version'] as string, nonce: second['nonce'] as string });
      await c.send({ names: [], version: third['version'] as string, nonce: third['nonce'] as string });
      const fourth = await c.recv();
      out.push(fourth);
      await c.send({ names: ['default', `spiffe://${TD}/not-mine`], version: fourth['version'] as string, nonce: fourth['nonce'] as string });
      out.push(await c.recv());
      return out;
    },
  ],
  [
    'FetchSecrets: names, the SPIFFE validator and trusted_ca forms, refusals',
    UID.a,
    async (c) => [
      await c.run({ op: 'fetch', names: [] }),
      await c.run({ op: 'fetch', names: ['default', 'ROOTCA', 'ALL'] }),
      await c.run({ op: 'fetch', names: [`spiffe://${TD}`, 'ROOTCA'] }),
      await c.run({ op: 'fetch', names: [ID_A, 'default'] }),
      await c.run({ op: 'fetch', names: ['ROOTCA', `spiffe://${FED}`], node: { id: 'old', build_version: [1, 17, 0] } }),
      await c.run({ op: 'fetch', names: ['ALL'], node: { id: 'off', metadata: { disable_spiffe_cert_validation: 'true' } } }),
      await c.run({ op: 'fetch', names: ['spiffe://elsewhere.org', 'b', 'a'] }),
      await c.run({ op: 'delta', names: ['default'] }),
    ],
  ],
  [
    'a workload without an identity',
    UID.nobody,
    async (c) => {
      const out = [await c.run({ op: 'fetch', names: [] }), await c.run({ op: 'fetch', names: ['default'] })];
      await c.send({ names: ['ROOTCA'] });
      out.push(await c.recv());
      return out;
    },
  ],
];

const GO = detectGo();

describe.skipIf(!GO.ok && process.env['CI'] !== 'true')('Envoy SDS: our agent and spire-agent answer the same client the same', () => {
  beforeAll(async () => {
    bin = await buildSdsClient(GO);
    server = await startSpireServer({ trustDomain: TD });
    const fed = await makeTestCa({ name: `CN=${FED} root`, notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 86_400_000) });
    const fedFile = join(server.dir, 'fed.pem');
    await writeFile(fedFile, fed.pem);
    const set = await server.cli('bundle', 'set', '-id', `spiffe://${FED}`, '-path', fedFile);
    if (set.code !== 0) throw new Error(`bundle set: ${set.stdout}${set.stderr}`);
    const [ourToken, theirToken] = [await spireJoinToken(server), await spireJoinToken(server)];
    [ours, theirs] = await Promise.all([
      startAgentProcess({ server, joinToken: ourToken, trustBundlePath: server.bundlePath, syncInterval: '1s' }),
      startSpireAgent({ server, joinToken: theirToken, trustBundlePath: server.bundlePath }),
    ]);
    for (const t of [ourToken, theirToken]) {
      const r = await server.cli('entry', 'create', '-parentID', `spiffe://${TD}/spire/agent/join_token/${t}`, '-spiffeID', ID_A, '-selector', `unix:uid:${UID.a}`, '-federatesWith', `spiffe://${FED}`);
      if (r.code !== 0) throw new Error(`entry create: ${r.stdout}${r.stderr}`);
    }
    // Both serve the SVID and the federated bundle (spire-server reloads its entry cache every 5 s).
    const deadline = Date.now() + 60_000;
    const probes = await Promise.all([client(ours.socketPath, UID.a), client(theirs.socketPath, UID.a)]);
    for (;;) {
      const got = await Promise.all(probes.map((p) => p.run({ op: 'fetch', names: ['default', `spiffe://${FED}`] })));
      if (got.every((e) => e.event === 'fetched')) break;
      if (Date.now() > deadline) throw new Error(`the entry is not served by both agents within 60 s: ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }, 600_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all([ours?.cleanup(), theirs?.cleanup()]);
    await server?.cleanup();
  });

  it.each(SCRIPTS)('%s', async (_name, uid, script) => {
    const { ours: o, theirs: t } = await onBoth(uid, script);
    expect(o).toEqual(t);
  });
});
