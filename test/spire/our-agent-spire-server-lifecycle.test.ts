/**
 * Our agent against the real `spire-server` v1.13.3 over the server's lifecycle: a federated
 * bundle set on spire-server (another real spire-server's), a spire-server restart (served
 * from cache while it is down, in sync again after), an X.509 CA rotation driven with
 * `spire-server localauthority x509 prepare|activate`, and the forced rotation after
 * `localauthority x509 taint` of the old authority, then its `revoke` (and the same for a
 * JWT key: `localauthority jwt prepare|activate|taint`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { startAgentProcess, AGENT_BIN, type AgentHandle } from '../support/agent-process.ts';
import { loadState } from '../../src/agent/storage.ts';
import { NODE } from '../support/server-process.ts';
import { eventually } from '../support/eventually.ts';
import { runOk, spireJoinToken, startSpireServer, type SpireServerHandle } from './support/spire-processes.ts';
import { securityHeader, workloadClient } from '../support/workload-api-fixtures.ts';
import { watchX509, type SeenSvid, type X509Watch } from './support/workload.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';

const TD = 'example.org';
const OTHER_TD = 'other.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/workload`;
/** An entry with the default 1 h X509-SVID TTL: its SVID is still the old CA's when that is tainted. */
const LONG_LIVED = `spiffe://${TD}/long-lived`;
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
  await createEntry(LONG_LIVED);
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

describe('our agent against the real spire-server: federation, restart, CA rotation, taint and revoke', () => {
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

  // As SPIRE's agent: a bundle key marked tainted makes the agent re-mint the SVIDs it signed
  // and rotate its own SVID at once, so the later revoke (after which spire-server refuses an
  // SVID of the revoked CA with TLS alert 42) costs it nothing.
  it('re-mints SVIDs signed by a tainted X.509 authority and rotates its own SVID at once, so revoking it is harmless', async () => {
    type Authority = { authority_id: string };
    const state = await serverJson<{ active?: Authority; old?: Authority }>('localauthority', 'x509', 'show');
    const oldId = state.old?.authority_id as string;
    expect(oldId).toMatch(/^[0-9a-f]{40}$/);
    const current = workloadOf(watch.updates.at(-1)?.svids ?? []) as SeenSvid;
    // The previous test left: WORKLOAD from the new CA, LONG_LIVED and the agent SVID from the old one.
    const newCa = current.bundle.find((r) => signedBy(current.leaf, r)) as X509Certificate;
    const oldCa = current.bundle.find((r) => r !== newCa) as X509Certificate;
    expect(current.bundle).toHaveLength(2);
    const before = watch.updates.at(-1)?.svids ?? [];
    const ofOldCa = before.filter((s) => signedBy(s.leaf, oldCa)).map((s) => s.spiffeId).sort();
    // LONG_LIVED, and the 1 h SVID of the entry created in the restart test.
    expect(ofOldCa).toEqual([`spiffe://${TD}/after-restart`, LONG_LIVED]);
    const agentLeaf = async () => new X509Certificate((await loadState(agent.dataDir))?.svid[0] as Buffer);
    expect(signedBy(await agentLeaf(), oldCa)).toBe(true);

    const from = agent.logs().length;
    const updatesFrom = watch.updates.length;
    const taintedAt = performance.now();
    await serverJson('localauthority', 'x509', 'taint', '-authorityID', oldId);
    // Within a sync or two: every SVID comes from the new CA, pushed on the stream.
    const remint = await watch.waitFor(
      (u) => u.svids.length === before.length && u.svids.every((s) => signedBy(s.leaf, newCa)),
      5 * SYNC_INTERVAL_MS + 5_000,
      updatesFrom,
    );
    console.log(`the SVID of the tainted CA was replaced on the stream ${((remint.at - taintedAt) / 1000).toFixed(1)} s after the taint`);
    await agent.waitForLog(/"msg":"agent SVID is signed by a tainted X\.509 authority: rotating it now"/, 10_000, from);
    await agent.waitForLog(/"reason":"tainted authority"[^\n]*"msg":"agent SVID rotated"/, 10_000, from);
    expect(signedBy(await agentLeaf(), newCa)).toBe(true);
    expect(agent.logs().slice(from)).toMatch(/"svids":2,[^\n]*"msg":"X\.509 authority tainted: re-minting the 2 X509-SVIDs it signed"/);
    // The others were left alone: WORKLOAD keeps its SVID (same serial).
    const workloadBefore = workloadOf(before) as SeenSvid;
    expect(workloadOf(remint.svids)?.serial).toBe(workloadBefore.serial);
    // Once per taint: later syncs see the same tainted key and do nothing more.
    await new Promise((r) => setTimeout(r, 3 * SYNC_INTERVAL_MS));
    expect(agent.logs().slice(from).match(/X\.509 authority tainted/g)).toHaveLength(1);
    expect(agent.logs().slice(from).match(/rotating it now/g)).toHaveLength(1);

    // Revoke: the old root leaves the bundle, and the agent keeps syncing with its new SVID.
    await serverJson('localauthority', 'x509', 'revoke', '-authorityID', oldId);
    const afterRevoke = `spiffe://${TD}/after-revoke`;
    const revokeFrom = watch.updates.length;
    await createEntry(afterRevoke);
    const synced = await watch.waitFor((u) => u.svids.some((s) => s.spiffeId === afterRevoke) && u.svids.every((s) => s.bundle.length === 1), 15_000, revokeFrom);
    expect(synced.svids.every((s) => signedBy(s.leaf, newCa) && s.bundle[0]?.fingerprint256 === newCa.fingerprint256)).toBe(true);
    // A new connection may meet spire-server's own SVID from the revoked CA for up to its 5 s
    // rotation check (retried, see server-error-policy.ts); the agent's SVID is never refused.
    expect(agent.logs().slice(from)).not.toMatch(/refuses the agent SVID|alert number 42|"msg":"stopping/);
    const retried = agent.logs().slice(from).match(/"msg":"server unreachable or refused/g)?.length ?? 0;
    console.log(`after the revoke: ${retried} sync${retried === 1 ? '' : 's'} retried while spire-server's own SVID was still the revoked CA's`);
    expect(agent.child?.exitCode).toBeNull();
  });

  it('drops a cached JWT-SVID signed with a tainted JWT key: the next fetch gets one signed with the new key', async () => {
    const fetchJwt = (): Promise<string> =>
      new Promise((resolve, reject) =>
        client.FetchJWTSVID({ audience: ['taint'], spiffe_id: WORKLOAD }, securityHeader(), (err, res) => (err !== null ? reject(err) : resolve(res?.svids[0]?.svid ?? ''))),
      );
    const kidOf = (token: string): string => (JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()) as { kid: string }).kid;
    const first = await fetchJwt();
    expect(await fetchJwt()).toBe(first); // cached
    type Authority = { authority_id: string };
    const prepared = await serverJson<{ prepared_authority: Authority }>('localauthority', 'jwt', 'prepare');
    await serverJson('localauthority', 'jwt', 'activate', '-authorityID', prepared.prepared_authority.authority_id);
    const state = await serverJson<{ old?: Authority }>('localauthority', 'jwt', 'show');
    const oldId = state.old?.authority_id as string;
    expect(oldId).toBe(kidOf(first));
    const from = agent.logs().length;
    await serverJson('localauthority', 'jwt', 'taint', '-authorityID', oldId);
    // Without the eviction the cached token would be served until its half-life (2.5 min).
    await agent.waitForLog(/"msg":"JWT key tainted: dropped the \d+ cached JWT-SVIDs? it signed"/, 5 * SYNC_INTERVAL_MS + 5_000, from);
    const next = await fetchJwt();
    expect(kidOf(next)).toBe(prepared.prepared_authority.authority_id);
  });
});
