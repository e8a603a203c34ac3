/**
 * An agent that missed the taint window: the real `spire-server` v1.13.3 rotates its X.509 CA
 * (`localauthority x509 prepare|activate|taint|revoke`) while our agents are stopped, so when
 * they come back their stored SVIDs are signed by a revoked authority and spire-server refuses
 * them in the TLS handshake (alert 42). The k8s_psat agent (reattestable; spire-server's own
 * k8s_psat plugin reviews its token against the fake kube-apiserver) attests again with a new
 * key and syncs; the join_token agent cannot, keeps retrying and says once what to do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { psatAgentPlugin, psatServerPlugin, startFakeKubeApiserver, type FakeKubeApiserver } from '../support/fake-kube-apiserver.ts';
import { loadState } from '../../src/agent/storage.ts';
import { eventually } from '../support/eventually.ts';
import { spireJoinToken, startSpireServer, type SpireServerHandle } from './support/spire-processes.ts';

const TD = 'example.org';
const NS = 'spire';
const POD = 'spire-agent-refused';

let api: FakeKubeApiserver;
let server: SpireServerHandle;
let psat: AgentHandle;
let joined: AgentHandle;
let dir: string;
let joinedId: string;

async function serverJson<T>(...args: string[]): Promise<T> {
  const r = await server.cli(...args, '-output', 'json');
  if (r.code !== 0) throw new Error(`spire-server ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const storedLeaf = async (agent: AgentHandle): Promise<X509Certificate> => new X509Certificate((await loadState(agent.dataDir))?.svid[0] as Buffer);
const storedRoots = async (agent: AgentHandle): Promise<number> => (await loadState(agent.dataDir))?.bundle.length ?? 0;

beforeAll(async () => {
  api = await startFakeKubeApiserver();
  api.addNode({ name: 'node-a' });
  api.addPod({ namespace: NS, name: POD, nodeName: 'node-a', serviceAccount: 'spire-agent' });
  dir = await mkdtemp(join(tmpdir(), 'sna-refused-'));
  const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
  server = await startSpireServer({
    trustDomain: TD,
    serverBlock: `  experimental {\n    cache_reload_interval = "500ms"\n  }`,
    plugins: psatServerPlugin(kubeconfig, `${NS}:spire-agent`),
  });
  const tokenPath = join(dir, 'token');
  await writeFile(tokenPath, await api.tokenForPod(NS, POD));
  const token = await spireJoinToken(server);
  joinedId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  [psat, joined] = await Promise.all([
    startAgentProcess({
      server,
      trustBundlePath: server.bundlePath,
      syncInterval: '1s',
      nodeAttestor: psatAgentPlugin(tokenPath),
    }),
    startAgentProcess({ server, joinToken: token, trustBundlePath: server.bundlePath, syncInterval: '1s' }),
  ]);
  await Promise.all([psat, joined].map((a) => a.waitForLog(/"msg":"node attested"/, 30_000)));
}, 120_000);

afterAll(async () => {
  await Promise.all([psat?.cleanup(), joined?.cleanup()]);
  await server?.cleanup();
  await api?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('our agents come back after spire-server revoked the authority that signed their SVIDs', () => {
  it('a k8s_psat agent attests again with a new key and syncs; a join_token agent retries and says once what to do', async () => {
    type Authority = { authority_id: string };
    const prepared = await serverJson<{ prepared_authority: Authority }>('localauthority', 'x509', 'prepare');
    // Both agents learn the prepared root (and store it), so they will still trust the server.
    await eventually(async () => {
      for (const a of [psat, joined]) if ((await storedRoots(a)) !== 2) throw new Error('prepared root not stored yet');
    }, 20_000, 250);
    const oldPsatLeaf = await storedLeaf(psat);
    const oldJoinedLeaf = await storedLeaf(joined);
    const psatId = oldPsatLeaf.subjectAltName?.replace(/^URI:/, '') as string;
    expect(psatId).toMatch(new RegExp(`^spiffe://${TD}/spire/agent/k8s_psat/c1/`));
    expect([await psat.stop(), await joined.stop()]).toEqual([0, 0]);

    // The taint window passes while they are down.
    await serverJson('localauthority', 'x509', 'activate', '-authorityID', prepared.prepared_authority.authority_id);
    const oldId = (await serverJson<{ old?: Authority }>('localauthority', 'x509', 'show')).old?.authority_id as string;
    await serverJson('localauthority', 'x509', 'taint', '-authorityID', oldId);
    await serverJson('localauthority', 'x509', 'revoke', '-authorityID', oldId);

    const psatFrom = psat.logs().length;
    const joinedFrom = joined.logs().length;
    await Promise.all([psat.start(), joined.start()]);

    // k8s_psat: refused, re-attested with a new key, in sync again.
    const refused = await psat.waitForLog(/[^\n]*"msg":"the server refuses the agent SVID in the TLS handshake \(alert 42 bad_certificate\)[^\n]*: attesting again with a new key"[^\n]*/, 30_000, psatFrom);
    expect(refused[0]).toContain('"level":"warn"');
    await psat.waitForLog(/"msg":"node attested"/, 30_000, psatFrom);
    await psat.waitForLog(/"msg":"synced with the server again"/, 30_000, psatFrom);
    const newPsatLeaf = await storedLeaf(psat);
    expect(newPsatLeaf.subjectAltName).toBe(`URI:${psatId}`);
    expect(newPsatLeaf.publicKey.export({ format: 'der', type: 'spki' }).equals(oldPsatLeaf.publicKey.export({ format: 'der', type: 'spki' }))).toBe(false);
    expect(newPsatLeaf.serialNumber).not.toBe(oldPsatLeaf.serialNumber);
    expect(psat.logs().slice(psatFrom).match(/refuses the agent SVID/g)).toHaveLength(1);

    // join_token: keeps retrying on its refused SVID, explains once, attests nothing.
    await eventually(async () => {
      const retries = joined.logs().slice(joinedFrom).match(/"msg":"server unreachable or refused/g)?.length ?? 0;
      if (retries < 3) throw new Error(`${retries} retries so far`);
    }, 30_000, 250);
    const explained = joined.logs().slice(joinedFrom).match(/[^\n]*the server refuses the agent SVID in the TLS handshake[^\n]*/g) ?? [];
    expect(explained).toHaveLength(1);
    expect(explained[0]).toContain('"level":"error"');
    expect(explained[0]).toContain(
      `A join_token agent cannot attest again by itself: create a new join token on the server (spiffe-server token generate, or spire-server token generate), move ${join(joined.dataDir, 'agent-data.json')} away and restart the agent with -joinToken <token>`,
    );
    expect(explained[0]).toContain(`evict the old record (spiffe-server agent evict -spiffeID ${joinedId})`);
    expect(joined.logs().slice(joinedFrom)).not.toMatch(/"msg":"node attested"|"msg":"stopping/);
    expect(joined.child?.exitCode).toBeNull();
    expect((await storedLeaf(joined)).serialNumber).toBe(oldJoinedLeaf.serialNumber);
  });
});
