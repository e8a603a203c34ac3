/**
 * Our agent against the real `spire-server` v1.13.3 over the server's lifecycle: a federated
 * bundle set on spire-server (another real spire-server's), a spire-server restart (served
 * from cache while it is down, in sync again after), and an X.509 CA rotation driven with
 * `spire-server localauthority x509 prepare|activate`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { startAgentProcess, AGENT_BIN, type AgentHandle } from '../support/agent-process.ts';
import { NODE } from '../support/server-process.ts';
import { eventually } from '../support/eventually.ts';
import { runOk, spireJoinToken, startSpireServer, type SpireServerHandle } from './support/spire-processes.ts';
import { watchX509, workloadClient, type SeenSvid, type X509Watch } from './support/workload.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';

const TD = 'example.org';
const OTHER_TD = 'other.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/workload`;
const X509_TTL_S = 30;
const SYNC_INTERVAL_MS = 1_000;

let server: SpireServerHandle;
let other: SpireServerHandle;
let agent: AgentHandle;
let agentId: string;
let client: WorkloadApiClient;
let watch: X509Watch;

async function serverJson<T>(...args: string[]): Promise<T> {
  const r = await server.cli(...args, '-output', 'json');
  if (r.code !== 0) throw new Error(`spire-server ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function createEntry(spiffeId: string, ...extra: string[]): Promise<string> {
  const out = await serverJson<{ results: { status: { code: number }; entry: { id: string } }[] }>(
    'entry', 'create', '-parentID', agentId, '-spiffeID', spiffeId, '-selector', `unix:uid:${UID}`, ...extra,
  );
  if (out.results[0]?.status.code !== 0) throw new Error(`entry create ${spiffeId}: ${JSON.stringify(out)}`);
  return out.results[0].entry.id;
}

const workloadOf = (svids: SeenSvid[]): SeenSvid | undefined => svids.find((s) => s.spiffeId === WORKLOAD);
const signedBy = (leaf: X509Certificate, root: X509Certificate): boolean => leaf.checkIssued(root) && leaf.verify(root.publicKey);

beforeAll(async () => {
  const serverBlock = `  experimental {\n    cache_reload_interval = "500ms"\n  }`;
  [server, other] = await Promise.all([startSpireServer({ trustDomain: TD, serverBlock }), startSpireServer({ trustDomain: OTHER_TD })]);
  const set = await server.cli('bundle', 'set', '-id', `spiffe://${OTHER_TD}`, '-path', other.bundlePath);
  if (set.code !== 0) throw new Error(`bundle set: ${set.stdout}${set.stderr}`);
  const token = await spireJoinToken(server);
  agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  agent = await startAgentProcess({ server, joinToken: token, trustBundlePath: server.bundlePath, syncInterval: `${SYNC_INTERVAL_MS}ms` });
  await createEntry(WORKLOAD, '-federatesWith', `spiffe://${OTHER_TD}`, '-x509SVIDTTL', String(X509_TTL_S));
  // Watch once the entry is served (a stream opened before gets PermissionDenied and ends).
  await eventually(() => runOk(NODE, [AGENT_BIN, 'api', 'fetch', 'x509', '-socketPath', agent.socketPath]), 20_000);
  client = workloadClient(agent.socketPath);
  watch = watchX509(client);
});

afterAll(async () => {
  watch?.close();
  client?.close();
  await agent?.cleanup();
  await Promise.all([server?.cleanup(), other?.cleanup()]);
});

describe('our agent against the real spire-server: federation, restart, CA rotation', () => {
  it('serves the federated bundle spire-server holds for an entry that federates with it', async () => {
    const otherRoot = new X509Certificate(await readFile(other.bundlePath));
    const update = await watch.waitFor((u) => workloadOf(u.svids) !== undefined, 20_000);
    expect(Object.keys(update.federated)).toEqual([`spiffe://${OTHER_TD}`]);
    expect(update.federated[`spiffe://${OTHER_TD}`]?.map((c) => c.fingerprint256)).toEqual([otherRoot.fingerprint256]);
  });

  it('keeps serving from its cache while spire-server is down, and is in sync again after its restart', async () => {
    expect(await server.stop()).toBe(0);
    const from = agent.logs().length;
    await agent.waitForLog(/"msg":"server unreachable or refused; serving \d+ cached X509-SVIDs? meanwhile; retrying"/, 15_000, from);
    const during = await runOk(NODE, [AGENT_BIN, 'api', 'fetch', 'x509', '-socketPath', agent.socketPath]);
    expect(during).toMatch(new RegExp(`SPIFFE ID:\\s+${WORKLOAD}\\n`));

    await server.restart();
    const restartedAt = performance.now();
    const later = `spiffe://${TD}/after-restart`;
    await createEntry(later);
    const seen = await watch.waitFor((u) => u.svids.some((s) => s.spiffeId === later), 15_000, watch.updates.length);
    console.log(`an entry created after spire-server's restart reached a stream ${((seen.at - restartedAt) / 1000).toFixed(1)} s after the restart`);
    expect(agent.child?.exitCode).toBeNull();
  });

  it('follows an X.509 CA rotation (localauthority x509 prepare, activate): both roots served, then SVIDs from the new CA', async () => {
    const oldRoot = new X509Certificate(await readFile(server.bundlePath));
    const prepared = await serverJson<{ prepared_authority: { authority_id: string } }>('localauthority', 'x509', 'prepare');
    const authorityId = prepared.prepared_authority.authority_id;
    expect(authorityId).toMatch(/^[0-9a-f]{40}$/);

    // The prepared root is published first: the stream's bundle grows to both roots.
    const both = await watch.waitFor((u) => (workloadOf(u.svids)?.bundle.length ?? 0) === 2, 20_000, watch.updates.length);
    const roots = workloadOf(both.svids)?.bundle as X509Certificate[];
    expect(roots.map((r) => r.fingerprint256)).toContain(oldRoot.fingerprint256);
    const newRoot = roots.find((r) => r.fingerprint256 !== oldRoot.fingerprint256) as X509Certificate;
    expect(newRoot.subjectAltName).toBe(`URI:spiffe://${TD}`);

    const activated = await serverJson<{ activated_authority: { authority_id: string } }>('localauthority', 'x509', 'activate', '-authorityID', authorityId);
    expect(activated.activated_authority.authority_id).toBe(authorityId);
    // The next rotation of the 30 s SVID is signed by the new CA, and still sent with both roots.
    const rotated = await watch.waitFor(
      (u) => {
        const svid = workloadOf(u.svids);
        return svid !== undefined && signedBy(svid.leaf, newRoot);
      },
      (X509_TTL_S + 15) * 1000,
      watch.updates.length,
    );
    expect(workloadOf(rotated.svids)?.bundle.map((r) => r.fingerprint256).sort()).toEqual([oldRoot.fingerprint256, newRoot.fingerprint256].sort());
    const ours = await eventually(() => runOk(NODE, [AGENT_BIN, 'api', 'fetch', 'x509', '-socketPath', agent.socketPath]), 10_000);
    expect(ours).toMatch(new RegExp(`SPIFFE ID:\\s+${WORKLOAD}\\n`));
  });

  // Not yet: SPIRE's agent, seeing a bundle key marked tainted (`localauthority x509 taint`),
  // re-mints the SVIDs that key signed and rotates its own SVID at once. Ours does neither (a
  // workload SVID still came from the tainted CA 12 s later), so after `localauthority x509
  // revoke` spire-server refuses our agent's SVID (TLS alert 42, bad certificate) on every sync
  // while the agent keeps serving SVIDs from the revoked CA. The fix belongs in src/agent/manager.
  it.todo('re-mints SVIDs signed by a tainted X.509 authority and rotates its own SVID before the authority is revoked');
});
