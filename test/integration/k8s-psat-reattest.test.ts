/**
 * A k8s_psat agent process rotates its SVID by attesting again, and each attestation presents
 * the token the kubelet last wrote (issue 11: "the projected token is re-read at
 * re-attestation"). The token file is laid out as the kubelet's atomic writer writes a
 * projected volume: `token` → `..data/token`, `..data` → a timestamped directory, replaced by
 * renaming a new `..data` symlink over the old one, so a reader that kept the first file open
 * (or resolved the symlink once) would keep presenting the first token.
 *
 * Real agent and server processes; the apiserver (TokenReview) is the test double, so the test
 * can see which token each attestation presented.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { psatAgentPlugin, psatServerPlugin, startFakeKubeApiserver, type FakeKubeApiserver } from '../support/fake-kube-apiserver.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const NS = 'spire';
const POD = 'spire-agent-r3att';

let api: FakeKubeApiserver;
let server: ServerHandle;
let agent: AgentHandle;
let dir: string;
let generation = 0;

/** Writes `token` as the kubelet's atomic writer does: a new timestamped dir, then `..data` swapped by rename. */
async function kubeletWrite(volume: string, token: string): Promise<void> {
  generation++;
  const data = `..2026_12_06_00_00_0${generation}.${generation}`;
  await mkdir(join(volume, data));
  await writeFile(join(volume, data, 'token'), token, { mode: 0o644 });
  await symlink(data, join(volume, '..data_tmp'));
  await rename(join(volume, '..data_tmp'), join(volume, '..data'));
  if (generation === 1) await symlink('..data/token', join(volume, 'token'));
}

beforeAll(async () => {
  api = await startFakeKubeApiserver();
  api.addNode({ name: 'node-a' });
  api.addPod({ namespace: NS, name: POD, nodeName: 'node-a', serviceAccount: 'spire-agent' });
  dir = await mkdtemp(join(tmpdir(), 'sna-psat-reattest-'));
  const kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
  server = await startServerProcess({
    trustDomain: TD,
    // Rotation at about half of this: several re-attestations within the test.
    serverBlock: '  agent_ttl = "20s"',
    plugins: psatServerPlugin(kubeconfig, `${NS}:spire-agent`),
  });
  await mkdir(join(dir, 'psat'));
  await kubeletWrite(join(dir, 'psat'), await api.tokenForPod(NS, POD));
  agent = await startAgentProcess({
    server,
    nodeAttestor: psatAgentPlugin(join(dir, 'psat', 'token')),
  });
}, 60_000);

afterAll(async () => {
  await agent?.cleanup();
  await server?.cleanup();
  await api?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('k8s_psat agent rotation (real agent process)', () => {
  it('re-attests at rotation time with the token the kubelet wrote last, keeping its SPIFFE ID', async () => {
    const first = await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"k8s_psat"/, 30_000);
    const agentId = first[1] as string;
    const firstToken = api.reviewedTokens[0] as string;
    const written = [firstToken];

    /**
     * The kubelet refreshes the token; the next re-attestations present it. A rotation that was
     * already under way when the file changed may still present the one before (a race the
     * kubelet has too), so what is checked: once the new token is presented, no older one is.
     */
    const refresh = async (): Promise<void> => {
      const token = await api.tokenForPod(NS, POD);
      expect(written).not.toContain(token);
      written.push(token);
      await kubeletWrite(join(dir, 'psat'), token);
      await eventually(async () => {
        if (!api.reviewedTokens.includes(token)) throw new Error(`not presented yet (${api.reviewedTokens.length} TokenReviews)`);
      }, 30_000, 100);
      const since = api.reviewedTokens.slice(api.reviewedTokens.indexOf(token));
      expect(since.every((t) => t === token)).toBe(true);
    };
    await refresh();
    const rotated = await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","reason":"rotation time","msg":"agent SVID rotated by attesting again"/, 30_000);
    expect(rotated[1]).toBe(agentId);
    // And again: each attestation reads the file afresh.
    await refresh();
    // Every review presented a token the kubelet had written, in the order it wrote them.
    const order = api.reviewedTokens.map((t) => written.indexOf(t));
    expect(order.every((i, n) => i >= 0 && (n === 0 || i >= (order[n - 1] as number)))).toBe(true);

    // One agent on record, same ID, the latest serial only.
    const shown = await server.cli('agent', 'list');
    expect(shown.stdout.match(/SPIFFE ID\s*:\s*(\S+)/g)).toEqual([`SPIFFE ID         : ${agentId}`]);
    // No token reaches either log.
    for (const token of written) {
      expect(agent.logs()).not.toContain(token);
      expect(server.logs()).not.toContain(token);
    }
  }, 90_000);
});
