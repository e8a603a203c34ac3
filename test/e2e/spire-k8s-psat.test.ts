/**
 * Our agent against SPIRE's own spire-server v1.13.3 on the real node, with SPIRE's k8s_psat
 * server plugin doing the TokenReview (issue 12): spire-server runs on the host
 * (support/spire-server.ts: it needs cgo, so it is no image) with agent_ttl 60 s; a second
 * agent DaemonSet from the shipped manifests (overlay/spire-agent: its own namespace, socket
 * directory and ports) attests to it; entries are created with the real `spire-server entry
 * create`; a go-spiffe workload (overlay/spire-workload) fetches through that agent's socket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { connect } from 'node:http2';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER, NODE, OVERLAY, TRUST_DOMAIN, kubectl, kubectlJson, kubectlResult, podsOf, waitFor, type PodInfo } from './support/kube.ts';
import { fetchIn, logLines } from './support/workload.ts';
import { AGENT_SELECTOR } from './support/deploy.ts';
import { KUBELET_ROOT } from './support/cluster.ts';
import { startSpireServer, type SpireServer } from './support/spire-server.ts';

const NS = 'spire-psat';
const WORKLOAD_NS = 'spiffe-e2e-psat';
const PORT = 8091;
const NODE_LABEL = ['e2e.spiffe.io/pool', 'psat'] as const;
const ALIAS = `spiffe://${TRUST_DOMAIN}/k8s-cluster/${CLUSTER}/pool/psat`;
const BY_AGENT_ID = `spiffe://${TRUST_DOMAIN}/e2e/psat/under-agent`;
const BY_ALIAS_ID = `spiffe://${TRUST_DOMAIN}/e2e/psat/under-alias`;

const record = (line: string): void => void process.stdout.write(`[e2e record] ${line}\n`);

let spire: SpireServer;
let nodeUid: string;
let agentId: string;
let bundlePem: string;
let logFile: string;

/** `spire-server agent show` for the agent: its serial number and selectors. */
async function agentShow(): Promise<{ text: string; serial: string; selectors: string[] }> {
  const text = await spire.cliOk(['agent', 'show', '-spiffeID', agentId]);
  return {
    text,
    serial: /^Serial number\s*:\s*(\d+)$/m.exec(text)?.[1] ?? '',
    selectors: [...text.matchAll(/^Selectors\s*:\s*(\S+)$/gm)].map((m) => m[1] as string).sort(),
  };
}

async function agentPod(): Promise<PodInfo> {
  return waitFor('one Ready agent pod in spire-psat', 120_000, async () => {
    const p = await podsOf(NS, AGENT_SELECTOR);
    return p.length === 1 && p[0]?.ready === true ? p[0] : undefined;
  });
}

/** The agent's stored SVID chain and key, read from its in-memory data_dir on the host (never printed). */
function storedAgentSvid(pod: PodInfo): { chain: Buffer[]; keyPem: string } {
  const doc = JSON.parse(readFileSync(join(KUBELET_ROOT, 'pods', pod.uid, 'volumes/kubernetes.io~empty-dir/agent-data/agent-data.json'), 'utf8')) as { svid: string[]; key: string };
  const key = createPrivateKey({ key: Buffer.from(doc.key, 'base64'), format: 'der', type: 'pkcs8' });
  return { chain: doc.svid.map((c) => Buffer.from(c, 'base64')), keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

/** iat and jti of the agent's projected token (audience spire-server), read on the host; the token itself is never printed. */
function tokenClaims(pod: PodInfo): { iat: number; exp: number; jti: string } {
  const token = readFileSync(join(KUBELET_ROOT, 'pods', pod.uid, 'volumes/kubernetes.io~projected/spire-agent-token/spire-agent'), 'utf8');
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { iat: number; exp: number; jti?: string };
  return { iat: claims.iat, exp: claims.exp, jti: claims.jti ?? '' };
}

const pem = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;

/**
 * One agent-only call (Entry/GetAuthorizedEntries) to spire-server over mTLS with the given
 * SVID, the server authenticated as spiffe://<td>/spire/server against its bundle; returns
 * the gRPC status and message.
 */
function callAsAgent(chain: Buffer[], keyPem: string): Promise<{ status: string; message: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(`https://127.0.0.1:${PORT}`, {
      ca: bundlePem,
      cert: chain.map(pem).join(''),
      key: keyPem,
      checkServerIdentity: (_host, cert) =>
        cert.subjectaltname === `URI:spiffe://${TRUST_DOMAIN}/spire/server` ? undefined : new Error(`spire-server presented ${cert.subjectaltname}`),
    });
    session.once('error', reject);
    const req = session.request({ ':method': 'POST', ':path': '/spire.api.server.entry.v1.Entry/GetAuthorizedEntries', 'content-type': 'application/grpc', te: 'trailers' });
    let status: { status: string; message: string } | undefined;
    const take = (h: Record<string, unknown>): void => {
      if (h['grpc-status'] !== undefined) status = { status: String(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', () => undefined);
    req.once('error', reject);
    req.once('close', () => {
      session.close();
      if (status === undefined) reject(new Error('spire-server answered without a gRPC status'));
      else resolve(status);
    });
    req.end(Buffer.alloc(5));
  });
}

beforeAll(async () => {
  const bin = process.env['E2E_SPIRE_SERVER'];
  if (!bin) throw new Error('E2E_SPIRE_SERVER is not set: run the e2e suite with `npm run test:e2e` (test/e2e/run.ts builds SPIRE)');
  const root = process.env['E2E_ROOT'] ?? '';
  nodeUid = (await kubectl(['get', 'node', NODE, '-o', 'jsonpath={.metadata.uid}'])).trim();
  agentId = `spiffe://${TRUST_DOMAIN}/spire/agent/k8s_psat/${CLUSTER}/${nodeUid}`;
  await kubectl(['label', 'node', NODE, `${NODE_LABEL[0]}=${NODE_LABEL[1]}`, '--overwrite']);
  logFile = join(process.env['E2E_LOGS'] ?? root, 'spire-server.log');
  rmSync(logFile, { force: true });
  spire = await startSpireServer({
    bin,
    dir: join(root, 'spire-server'),
    logFile,
    runRoot: root,
    kubeconfig: join(root, 'pki', 'admin.kubeconfig'),
    port: PORT,
    trustDomain: TRUST_DOMAIN,
    agentTtl: '60s',
    k8sPsat: { cluster: CLUSTER, serviceAccountAllowList: [`${NS}:spire-agent`], allowedNodeLabelKeys: [NODE_LABEL[0]], allowedPodLabelKeys: ['app.kubernetes.io/name'] },
  });
  bundlePem = await spire.cliOk(['bundle', 'show']);
  // Entries first (manifests/README.md's order): one under the agent's own ID, one under a
  // node alias whose selectors only SPIRE's k8s_psat plugin produces (the node label).
  await spire.cliOk(['entry', 'create', '-parentID', agentId, '-spiffeID', BY_AGENT_ID, '-selector', `k8s:ns:${WORKLOAD_NS}`, '-selector', 'k8s:sa:e2e-psat-workload']);
  await spire.cliOk(['entry', 'create', '-node', '-spiffeID', ALIAS, '-selector', `k8s_psat:cluster:${CLUSTER}`, '-selector', `k8s_psat:agent_node_label:${NODE_LABEL[0]}:${NODE_LABEL[1]}`]);
  await spire.cliOk(['entry', 'create', '-parentID', ALIAS, '-spiffeID', BY_ALIAS_ID, '-selector', `k8s:ns:${WORKLOAD_NS}`, '-selector', 'k8s:pod-label:app:e2e-psat-workload']);
  // The namespace and spire-server's bundle, then the agent and the workload.
  await kubectl(['create', 'namespace', NS]);
  await kubectl(['-n', NS, 'create', 'configmap', 'spire-bundle', '--from-literal=bundle.crt=' + bundlePem]);
  await kubectl(['apply', '-k', join(OVERLAY, 'spire-agent')]);
  await kubectl(['apply', '-k', join(OVERLAY, 'spire-workload')]);
  await kubectl(['-n', NS, 'rollout', 'status', 'daemonset/spiffe-agent', '--timeout=180s'], undefined, 190_000);
  await kubectl(['-n', WORKLOAD_NS, 'rollout', 'status', 'deployment/e2e-psat-workload', '--timeout=180s'], undefined, 190_000);
}, 600_000);

afterAll(async () => {
  const logDir = process.env['E2E_LOGS'];
  if (logDir !== undefined) {
    const r = await kubectlResult(['-n', NS, 'logs', '--all-containers', '--prefix', 'daemonset/spiffe-agent']);
    writeFileSync(join(logDir, 'pod-spiffe-agent-psat.log'), r.stdout + r.stderr);
  }
  await kubectlResult(['delete', '-k', join(OVERLAY, 'spire-workload'), '--ignore-not-found', '--timeout=60s']);
  await kubectlResult(['delete', '-k', join(OVERLAY, 'spire-agent'), '--ignore-not-found', '--timeout=60s']);
  await kubectlResult(['label', 'node', NODE, `${NODE_LABEL[0]}-`]);
  await spire?.stop();
});

describe('our agent against SPIRE\'s spire-server with its own k8s_psat plugin', () => {
  it('keeps the shipped agent.json except the server port and the health and metrics ports', async () => {
    const shipped = (await kubectlJson<{ data: Record<string, string> }>(['create', '--dry-run=client', '-f', join(OVERLAY, '../../../manifests/agent/configmap.yaml')])).data['agent.json'] ?? '';
    const ours = readFileSync(join(OVERLAY, 'spire-agent/agent.json'), 'utf8');
    const a = JSON.parse(shipped) as { agent: Record<string, unknown>; health_checks: Record<string, unknown>; telemetry: { Prometheus: { port: number }[] }[] };
    const b = JSON.parse(ours) as typeof a;
    expect([b.agent['server_port'], b.health_checks['bind_port'], b.telemetry[0]?.Prometheus[0]?.port]).toEqual(['8091', '9983', 9989]);
    b.agent['server_port'] = a.agent['server_port'];
    b.health_checks['bind_port'] = a.health_checks['bind_port'];
    (b.telemetry[0]?.Prometheus[0] as { port: number }).port = a.telemetry[0]?.Prometheus[0]?.port ?? 0;
    expect(b).toEqual(a);
  });

  it('attests through SPIRE\'s k8s_psat plugin: agent list and show give the real node UID and SPIRE\'s selectors, with the allowed node and pod labels', async () => {
    const pod = await agentPod();
    const list = await spire.cliOk(['agent', 'list']);
    expect(list).toContain(`SPIFFE ID         : ${agentId}`);
    const show = await agentShow();
    expect(show.text).toContain('Attestation type  : k8s_psat');
    expect(show.text).toContain('Can re-attest     : true');
    expect(show.selectors).toEqual(
      [
        `k8s_psat:cluster:${CLUSTER}`,
        `k8s_psat:agent_ns:${NS}`,
        'k8s_psat:agent_sa:spire-agent',
        `k8s_psat:agent_pod_name:${pod.name}`,
        `k8s_psat:agent_pod_uid:${pod.uid}`,
        `k8s_psat:agent_node_ip:${pod.hostIP}`,
        `k8s_psat:agent_node_name:${NODE}`,
        `k8s_psat:agent_node_uid:${nodeUid}`,
        `k8s_psat:agent_node_label:${NODE_LABEL[0]}:${NODE_LABEL[1]}`,
        'k8s_psat:agent_pod_label:app.kubernetes.io/name:spiffe-agent',
      ].sort(),
    );
    const t = tokenClaims(pod);
    record(`spire-psat agent attested with its projected token iat ${new Date(t.iat * 1000).toISOString()} jti ${t.jti || '(none)'} (expires ${new Date(t.exp * 1000).toISOString()})`);
  });

  it('serves a go-spiffe workload the SVIDs of entries made with `spire-server entry create`, under the agent ID and under a node alias', async () => {
    const out = await waitFor('both entries to reach the workload', 60_000, async () => {
      const o = await fetchIn('e2e-psat-workload', 'e2e-audience', 'workload', WORKLOAD_NS);
      return o.x509?.ids.length === 2 ? o : undefined;
    });
    expect(out.x509?.ids).toEqual([BY_AGENT_ID, BY_ALIAS_ID].sort());
    expect(out.x509?.bundleTrustDomains).toEqual([TRUST_DOMAIN]);
    expect(out.jwt?.audience).toEqual(['e2e-audience']);
    expect(out.jwt?.validated).toBe(true);
    // Minted by SPIRE: the entries' IDs exist only there.
    const shown = await spire.cliOk(['entry', 'show', '-spiffeID', BY_ALIAS_ID]);
    expect(shown).toContain(`Parent ID        : ${ALIAS}`);
  });

  it('re-attests by itself before its 60 s SVID expires: a new serial in agent show, the old SVID refused, the workload still served', async () => {
    const pod = await agentPod();
    // The SVID the agent holds and the serial spire-server has for it, read as one (retried if
    // a re-attestation falls between the two reads).
    const serialOf = (chain: Buffer[]): string => BigInt(`0x${new X509Certificate(chain[0] as Buffer).serialNumber}`).toString();
    const { first, old } = await waitFor('the stored agent SVID to be the one spire-server has', 10_000, async () => {
      const o = storedAgentSvid(pod);
      const f = await agentShow();
      return serialOf(o.chain) === f.serial ? { first: f, old: o } : undefined;
    }, 200);
    const leaf = new X509Certificate(old.chain[0] as Buffer);
    record(`spire-psat agent SVID: valid ${(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000} s from its NotBefore (agent_ttl 60 s; SPIRE backdates NotBefore)`);
    const tokenBefore = tokenClaims(pod);
    const seenAt = Date.now();
    const second = await waitFor('a new agent serial in spire-server', 90_000, async () => {
      const s = await agentShow();
      return s.serial !== first.serial ? s : undefined;
    }, 1_000);
    record(`spire-psat agent re-attested: serial ${first.serial} → ${second.serial} (seen ${((Date.now() - seenAt) / 1000).toFixed(1)} s after the test looked)`);
    expect(second.selectors).toEqual(first.selectors);
    // By attesting again (AttestAgent with k8s_psat), not RenewAgent.
    const serverLog = (): string => readFileSync(logFile, 'utf8');
    const attestations = serverLog().split('\n').filter((l) => l.includes('msg="Agent attestation request completed"') && l.includes(`agent_id="${agentId}"`) && l.includes('node_attestor_type=k8s_psat'));
    expect(attestations.length).toBeGreaterThanOrEqual(2);
    expect(serverLog()).not.toContain('method=RenewAgent');
    // SPIRE refuses the replaced SVID once its node cache has the new serial (rebuilt every 5 s):
    // the caller sees only "authorization denied"; the server logs why.
    const refused = await waitFor('spire-server to refuse the old agent SVID', 20_000, async () => {
      const r = await callAsAgent(old.chain, old.keyPem);
      return r.status !== '0' ? r : undefined;
    });
    expect(refused).toEqual({ status: '7', message: 'authorization denied for method /spire.api.server.entry.v1.Entry/GetAuthorizedEntries' });
    expect(serverLog()).toMatch(new RegExp(`msg="Agent SVID is not active" .*caller_id="${agentId}" method=GetAuthorizedEntries .*serial_num=${second.serial} .*svid_serial_num=${first.serial}\n`));
    // The new one (from the agent's data_dir) is accepted.
    const now = storedAgentSvid(pod);
    expect((await callAsAgent(now.chain, now.keyPem)).status).toBe('0');
    const tokenAfter = tokenClaims(pod);
    record(`spire-psat re-attestation presented token iat ${new Date(tokenAfter.iat * 1000).toISOString()} jti ${tokenAfter.jti || '(none)'} (before: iat ${new Date(tokenBefore.iat * 1000).toISOString()} jti ${tokenBefore.jti || '(none)'}; the kubelet refreshes it at 80 % of 7200 s)`);
    // Still serving, the same pod, no restart.
    const out = await fetchIn('e2e-psat-workload', 'e2e-audience', 'workload', WORKLOAD_NS);
    expect(out.x509?.ids).toEqual([BY_AGENT_ID, BY_ALIAS_ID].sort());
    const after = await agentPod();
    expect([after.uid, after.containers.find((c) => c.name === 'spiffe-agent')?.restartCount]).toEqual([pod.uid, 0]);
    const errors = (await logLines(NS, `pod/${pod.name}`, 'spiffe-agent')).filter((l) => l['level'] === 'error');
    expect(errors.map((l) => l['msg'])).toEqual([]);
    // The workload's open watch never broke: no error after its first SVID.
    const events = await logLines(WORKLOAD_NS, 'deploy/e2e-psat-workload');
    const firstSvid = events.findIndex((e) => e['event'] === 'x509');
    expect(firstSvid).toBeGreaterThanOrEqual(0);
    expect(events.slice(firstSvid).filter((e) => e['event'] === 'error')).toEqual([]);
  });
});
