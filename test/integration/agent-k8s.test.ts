/**
 * Kubernetes workload attestation end to end: the real agent process with the k8s attestor
 * against a fake kubelet (real HTTPS, CA-verified, bearer token), and workloads that live in
 * REAL cgroups shaped like a kubelet's (CI runs as root, so the test creates them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServerProcess, NODE, REPO, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { podJson, startFakeKubelet, type FakeKubelet } from '../support/fake-kubelet.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const POD_UID = randomUUID();
const CONTAINER_ID = randomBytes(32).toString('hex');
/** A cgroup v1 hierarchy this machine mounts and root can write (pids). */
const CGROUP_ROOT = '/sys/fs/cgroup/pids';
const CGROUP_DIRS = ['kubepods', 'kubepods/besteffort', `kubepods/besteffort/pod${POD_UID}`, `kubepods/besteffort/pod${POD_UID}/${CONTAINER_ID}`];

let server: ServerHandle;
let agent: AgentHandle;
let kubelet: FakeKubelet;
let agentId: string;
const children: ChildProcess[] = [];

/** Runs the workload child as `uid`, inside the pod's container cgroup when `inPod`; resolves its first result. */
function workloadFetch(uid: number, inPod: boolean): Promise<Record<string, unknown>> {
  const script = join(REPO, 'test/support/workload-child.ts');
  const cgroupProcs = join(CGROUP_ROOT, CGROUP_DIRS.at(-1) as string, 'cgroup.procs');
  // The shell joins the cgroup, then becomes the workload (same PID), before it connects.
  const command = inPod ? `echo $$ > ${cgroupProcs} && exec "$0" "$@"` : 'exec "$0" "$@"';
  const proc = spawn('sh', ['-c', command, NODE, script, agent.socketPath, 'fetch'], { stdio: ['ignore', 'pipe', 'pipe'], ...(inPod ? {} : { uid, gid: uid }) });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of out.split('\n')) {
        if (line.includes('"svids"') || line.includes('"error"')) resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    proc.once('exit', () => setTimeout(() => reject(new Error(`workload exited without a result: ${out} ${err}`)), 50));
  });
}

beforeAll(async () => {
  for (const d of CGROUP_DIRS) await mkdir(join(CGROUP_ROOT, d), { recursive: true });
  kubelet = await startFakeKubelet({ nodeName: 'node-a' });
  kubelet.allowedTokens.add('agent-sa-token');
  kubelet.pods.set(
    POD_UID,
    podJson({
      uid: POD_UID,
      name: 'web-7d9f',
      namespace: 'default',
      serviceAccountName: 'web',
      labels: { app: 'web' },
      owners: [{ kind: 'ReplicaSet', name: 'web-7d', uid: randomUUID() }],
      containers: [{ name: 'web', image: 'nginx:1.27', imageID: 'docker.io/library/nginx@sha256:' + 'a'.repeat(64), containerID: `containerd://${CONTAINER_ID}` }],
    }),
  );
  server = await startServerProcess({ trustDomain: TD });
  const dir = server.dir;
  await writeFile(join(dir, 'kubelet-ca.crt'), kubelet.caPem);
  await writeFile(join(dir, 'kubelet-token'), 'agent-sa-token\n');
  const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;
  agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/ns/default/sa/web`, '-selector', 'k8s:ns:default', '-selector', 'k8s:sa:web');
  agent = await startAgentProcess({
    server,
    joinToken: token,
    extraPlugins: `  WorkloadAttestor "k8s" {
    plugin_data {
      kubelet_secure_port = ${new URL(kubelet.baseUrl).port}
      kubelet_ca_path = "${join(dir, 'kubelet-ca.crt')}"
      token_path = "${join(dir, 'kubelet-token')}"
      node_name = "127.0.0.1"
      poll_retry_interval = "100ms"
      max_poll_attempts = 5
    }
  }`,
  });
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  await agent?.cleanup();
  await server?.cleanup();
  await kubelet?.close();
  for (const d of [...CGROUP_DIRS].reverse()) await rmdir(join(CGROUP_ROOT, d)).catch(() => undefined);
});

describe('k8s workload attestation in the agent', () => {
  it('identifies a process in a pod container by its cgroup and the kubelet, and issues the pod entry', async () => {
    const result = await eventually(async () => {
      const r = await workloadFetch(0, true);
      if (r['event'] !== 'svids') throw new Error(JSON.stringify(r));
      return r;
    }, 30_000, 500);
    expect(result['ids']).toEqual([`spiffe://${TD}/ns/default/sa/web`]);
    expect(kubelet.lastAuthorization).toBe('Bearer agent-sa-token');
  }, 40_000);

  it('gives a process outside any container no k8s selectors and no error: no identity issued', async () => {
    const result = await workloadFetch(6123, false);
    expect(result).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
  });
});
