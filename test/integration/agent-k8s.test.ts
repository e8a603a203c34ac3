/**
 * Kubernetes end to end: the real server attests the real agent with k8s_psat (TokenReview
 * against a fake kube-apiserver, real signed projected tokens); a node-alias entry covers the
 * node; workloads live in REAL cgroups shaped like a kubelet's (CI runs as root) and the agent
 * identifies them through a fake kubelet over verified TLS with a bearer token. The health
 * listener's `/ready` names a kubelet that refuses the agent (issue 11: `nodes/proxy` removed
 * from its ClusterRole) and recovers once the kubelet answers again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startServerProcess, NODE, REPO, type ServerHandle } from '../support/server-process.ts';
import { healthChecksBlock, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { podJson, startFakeKubelet, type FakeKubelet } from '../support/fake-kubelet.ts';
import { psatAgentPlugin, psatServerPlugin, startFakeKubeApiserver, type FakeKubeApiserver } from '../support/fake-kube-apiserver.ts';
import { eventually } from '../support/eventually.ts';
import { KUBELET_REFUSAL_RECHECK_MS } from '../../src/attestors/workload/k8s/k8s.ts';

const TD = 'example.org';
/** A cgroup v1 hierarchy this machine mounts and root can write. */
const CGROUP_ROOT = '/sys/fs/cgroup/pids';

interface FakePod {
  uid: string;
  containerId: string;
  dirs: string[];
}

function fakePod(): FakePod {
  const uid = randomUUID();
  const containerId = randomBytes(32).toString('hex');
  return { uid, containerId, dirs: [`kubepods`, `kubepods/besteffort`, `kubepods/besteffort/pod${uid}`, `kubepods/besteffort/pod${uid}/${containerId}`] };
}

const demo = fakePod();
const other = fakePod();
/** A demo pod the kubelet lists only later, so attesting it needs a new kubelet request. */
const late = fakePod();

let server: ServerHandle;
let agent: AgentHandle;
let kubelet: FakeKubelet;
let api: FakeKubeApiserver;
let agentId: string;
let fixtures: string;
let healthPort: number;
const children: ChildProcess[] = [];

/** Runs the workload child, inside `pod`'s container cgroup if given; resolves its pid and first result. */
function workloadFetch(pod: FakePod | undefined): Promise<{ pid: number; result: Record<string, unknown> }> {
  const script = join(REPO, 'test/support/workload-child.ts');
  // The shell joins the cgroup, then becomes the workload (same PID), before it connects.
  const command = pod === undefined ? 'exec "$0" "$@"' : `echo $$ > ${join(CGROUP_ROOT, pod.dirs.at(-1) as string, 'cgroup.procs')} && exec "$0" "$@"`;
  const proc = spawn('sh', ['-c', command, NODE, script, agent.socketPath, 'fetch'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of out.split('\n')) {
        if (line.includes('"svids"') || line.includes('"error"')) resolve({ pid: proc.pid as number, result: JSON.parse(line) as Record<string, unknown> });
      }
    });
    proc.once('exit', () => setTimeout(() => reject(new Error(`workload exited without a result: ${out} ${err}`)), 50));
  });
}

beforeAll(async () => {
  for (const pod of [demo, other, late]) for (const d of pod.dirs) await mkdir(join(CGROUP_ROOT, d), { recursive: true });

  // The cluster: an apiserver that knows the agent's pod and node, and the node's kubelet.
  api = await startFakeKubeApiserver();
  api.addNode({ name: 'node-a' });
  api.addPod({ namespace: 'spire', name: 'spire-agent-x7k2p', nodeName: 'node-a', hostIp: '10.0.0.11', serviceAccount: 'spire-agent' });
  kubelet = await startFakeKubelet({ nodeName: 'node-a' });
  kubelet.allowedTokens.add('agent-sa-token');
  for (const [pod, ns, name] of [[demo, 'demo', 'demo-5f6d'], [other, 'other', 'other-9c8b']] as const) {
    kubelet.pods.set(
      pod.uid,
      podJson({
        uid: pod.uid,
        name,
        namespace: ns,
        serviceAccountName: 'demo',
        containers: [{ name: 'app', image: 'demo:1', imageID: `docker.io/library/demo@sha256:${'b'.repeat(64)}`, containerID: `containerd://${pod.containerId}` }],
      }),
    );
  }

  fixtures = await mkdtemp(join(tmpdir(), 'sna-k8s-'));
  const kubeconfig = await api.writeKubeconfig(join(fixtures, 'kubeconfig'));
  server = await startServerProcess({
    trustDomain: TD,
    plugins: psatServerPlugin(kubeconfig, 'spire:spire-agent'),
  });

  // One node alias covers every agent of cluster c1; the workload entry hangs off it.
  await server.cli('entry', 'create', '-node', '-spiffeID', `spiffe://${TD}/cluster/c1`, '-selector', 'k8s_psat:cluster:c1');
  await server.cli('entry', 'create', '-parentID', `spiffe://${TD}/cluster/c1`, '-spiffeID', `spiffe://${TD}/ns/demo/sa/demo`, '-selector', 'k8s:ns:demo', '-selector', 'k8s:sa:demo');

  // The agent's projected service-account token and the kubelet's CA and token.
  await writeFile(join(fixtures, 'psat'), await api.tokenForPod('spire', 'spire-agent-x7k2p'));
  await writeFile(join(fixtures, 'kubelet-ca.crt'), kubelet.caPem);
  await writeFile(join(fixtures, 'kubelet-token'), 'agent-sa-token\n');
  healthPort = await freePort();
  agent = await startAgentProcess({
    extraTopLevel: healthChecksBlock(healthPort),
    server,
    nodeAttestor: psatAgentPlugin(join(fixtures, 'psat')),
    extraPlugins: `  WorkloadAttestor "k8s" {
    plugin_data {
      kubelet_secure_port = ${new URL(kubelet.baseUrl).port}
      kubelet_ca_path = "${join(fixtures, 'kubelet-ca.crt')}"
      token_path = "${join(fixtures, 'kubelet-token')}"
      node_name = "127.0.0.1"
      poll_retry_interval = "100ms"
      max_poll_attempts = 5
    }
  }`,
  });
  agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"k8s_psat"/))[1] as string;
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  await agent?.cleanup();
  await server?.cleanup();
  await kubelet?.close();
  await api?.close();
  if (fixtures !== undefined) await rm(fixtures, { recursive: true, force: true });
  for (const pod of [demo, other, late]) for (const d of [...pod.dirs].reverse()) await rmdir(join(CGROUP_ROOT, d)).catch(() => undefined);
});

describe('Kubernetes end to end', () => {
  it('attests the agent with k8s_psat under the node UID', () => {
    expect(agentId).toMatch(new RegExp(`^spiffe://${TD.replace('.', '\\.')}/spire/agent/k8s_psat/c1/[0-9a-f-]{36}$`));
  });

  it('issues the demo SVID to a process in the demo pod, through the node alias', async () => {
    const { result } = await eventually(async () => {
      const r = await workloadFetch(demo);
      if (r.result['event'] !== 'svids') throw new Error(JSON.stringify(r.result));
      return r;
    }, 30_000, 500);
    expect(result['ids']).toEqual([`spiffe://${TD}/ns/demo/sa/demo`]);
    expect(kubelet.lastAuthorization).toBe('Bearer agent-sa-token');
  }, 40_000);

  it('refuses the same client in another namespace\'s pod', async () => {
    const { result } = await workloadFetch(other);
    expect(result).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
  });

  it('gives a process outside any pod no k8s selectors and no error', async () => {
    const from = agent.logs().length;
    const { pid, result } = await workloadFetch(undefined);
    expect(result).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
    const line = await agent.waitForLog(new RegExp(`"plugin":"k8s","caller_pid":${pid}[^\\n]*"selectors":0[^\\n]*"msg":"([^"]+)"`), 5_000, from);
    expect(line[1]).toBe('workload attestor succeeded');
  });
});

/** Podspec of the demo app in `pod`. */
function demoPod(pod: FakePod, name: string): unknown {
  return podJson({
    uid: pod.uid,
    name,
    namespace: 'demo',
    serviceAccountName: 'demo',
    containers: [{ name: 'app', image: 'demo:1', imageID: `docker.io/library/demo@sha256:${'b'.repeat(64)}`, containerID: `containerd://${pod.containerId}` }],
  });
}

async function ready(): Promise<{ status: number; body: { ready: boolean; reasons: string[]; kubelet?: { last_request: string; error?: string } } }> {
  const res = await fetch(`http://127.0.0.1:${healthPort}/ready`);
  return { status: res.status, body: (await res.json()) as never };
}

describe('readiness names a kubelet that refuses the agent (issue 11)', () => {
  it('/ready is 500 naming nodes/proxy while the kubelet answers 403, and 200 again once the kubelet answers, with no workload asking and no restart', async () => {
    const before = await ready();
    expect([before.status, before.body.ready, before.body.kubelet?.last_request]).toEqual([200, true, 'ok']);

    // "Remove nodes/proxy from the agent's ClusterRole": the kubelet now answers 403.
    kubelet.allowedTokens.delete('agent-sa-token');
    const from = agent.logs().length;
    const refused = await workloadFetch(late);
    // The unix attestor still answers, so the workload gets no identity rather than Unavailable.
    expect(refused.result).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
    const forbidden = new RegExp(
      `^kubelet: GET https://127\\.0\\.0\\.1:${new URL(kubelet.baseUrl).port}/pods returned 403 \\(Forbidden \\(user=system:serviceaccount:spire:spire-agent, verb=get, resource=nodes, subresource\\(s\\)=\\[proxy\\]\\)\\): ` +
        `the bearer token from ${join(fixtures, 'kubelet-token')} \\(not a JWT\\) may not read pods from the kubelet\\. Grant it "get" on "nodes/proxy"`,
    );
    const down = await ready();
    expect(down.status).toBe(500);
    expect(down.body.ready).toBe(false);
    expect(down.body.reasons).toHaveLength(1);
    expect(down.body.reasons[0]).toMatch(/^workload attestation cannot read pods from the kubelet: /);
    expect((down.body.reasons[0] as string).slice('workload attestation cannot read pods from the kubelet: '.length)).toMatch(forbidden);
    expect(down.body.kubelet?.last_request).toBe('forbidden');
    expect(down.body.kubelet?.error).toMatch(forbidden);
    // The agent's log names the permission too.
    await agent.waitForLog(/Grant it \\"get\\" on \\"nodes\/proxy\\"/, 5_000, from);

    // "Put it back": nobody asks for an identity, yet the agent asks the kubelet again in the
    // background (every KUBELET_REFUSAL_RECHECK_MS) and readiness follows.
    kubelet.allowedTokens.add('agent-sa-token');
    kubelet.pods.set(late.uid, demoPod(late, 'demo-late-2b7c'));
    const up = await eventually(async () => {
      const r = await ready();
      if (r.status !== 200) throw new Error(JSON.stringify(r.body));
      return r;
    }, KUBELET_REFUSAL_RECHECK_MS + 10_000, 250);
    expect([up.status, up.body.ready, up.body.reasons, up.body.kubelet]).toEqual([200, true, [], { last_request: 'ok', at: expect.any(String) }]);
    await agent.waitForLog(/"msg":"kubelet: the pod list is readable again"/, 5_000, from);
    const { result } = await workloadFetch(late);
    expect(result['ids']).toEqual([`spiffe://${TD}/ns/demo/sa/demo`]);
  }, 60_000);
});
