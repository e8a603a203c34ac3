/**
 * The shipped manifests on a real Kubernetes node (started by test/e2e/run.ts): the server
 * (manifests/server), the agent DaemonSet (manifests/), the shipped example workload
 * (manifests/examples) and the go-spiffe workload of test/e2e/workload, each through its
 * overlay in test/e2e/overlay (hostNetwork and friends: the node has no pod network).
 *
 * The order is the one manifests/README.md gives (support/deploy.ts): server, its bundle into
 * ConfigMap spire-bundle, the node-alias and workload entries, then the agent and the workloads.
 * Recorded, not asserted: the time from applying the agent to the workload's first SVID, and
 * the agent container's memory from its cgroup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLUSTER, NODE, OVERLAY, TRUST_DOMAIN, containerMemory, createEntry, kubectl, kubectlJson, kubectlResult, mib, podsOf, serverCli, waitFor, type PodInfo } from './support/kube.ts';
import { fetchIn, hostLogLines, logLines, type FetchOut } from './support/workload.ts';
import { AGENT_SELECTOR, EXAMPLE_ID, WORKLOAD_ID, deployProduct } from './support/deploy.ts';
import { REPO } from '../support/server-process.ts';

/** The agent's /ready from the host (hostNetwork: the shipped health port 9982 on the node). */
async function agentReady(): Promise<{ status: number; body: { ready: boolean; reasons: string[]; kubelet?: { last_request: string; error?: string } } }> {
  const res = await fetch('http://127.0.0.1:9982/ready');
  return { status: res.status, body: (await res.json()) as never };
}

/** `spiffe-agent <args>` run on the node as root, as an operator would (this process is root). */
async function agentCliOnNode(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(REPO, 'bin/spiffe-agent.js'), ...args], { cwd: '/' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * The admin socket of the agent pod (an emptyDir in the e2e overlay), as the node's root sees
 * it, through a short symlink: the kubelet's path is past the 107 bytes a socket address holds.
 */
function adminSocketOf(agent: PodInfo): string {
  const link = join(mkdtempSync(join(tmpdir(), 'sna-')), 'admin.sock');
  symlinkSync(`/var/lib/kubelet/pods/${agent.uid}/volumes/kubernetes.io~empty-dir/agent-admin/admin.sock`, link);
  return link;
}

const EXACT_ID = `spiffe://${TRUST_DOMAIN}/e2e/workload-exact`;
const WRONG_IMAGE_ID = `spiffe://${TRUST_DOMAIN}/e2e/workload-wrong-image`;

/** The selectors `spiffe-server agent show` prints, one per line ("Selectors : type:value", as spire-server), sorted. */
function agentSelectors(show: string): string[] {
  return [...show.matchAll(/^Selectors?\s*:\s*(\S+)$/gm)].map((m) => m[1] as string).sort();
}

const record: string[] = [];
const note = (line: string): void => {
  record.push(line);
  process.stdout.write(`[e2e record] ${line}\n`);
};

let agentPod: PodInfo;
let nodeUid: string;
let applyAt: number;
let firstSvidAt: number;

beforeAll(async () => {
  nodeUid = (await kubectl(['get', 'node', NODE, '-o', 'jsonpath={.metadata.uid}'])).trim();
  const deployed = await deployProduct();
  applyAt = deployed.applyAt;
  await kubectl(['-n', 'spiffe-e2e', 'rollout', 'status', 'deployment/e2e-workload', '--timeout=300s'], undefined, 310_000);
  const first = await waitFor('the workload watch to log its first X509-SVID', 60_000, async () =>
    (await logLines('spiffe-e2e', 'deploy/e2e-workload')).find((l) => l['event'] === 'x509'),
  );
  firstSvidAt = Date.parse(first['time'] as string);
  if (deployed.fresh) note(`kubectl apply (agent) → first X509-SVID in the go-spiffe workload: ${((firstSvidAt - applyAt) / 1000).toFixed(1)} s`);
  agentPod = (await podsOf('spire-system', AGENT_SELECTOR))[0] as PodInfo;
  await noteAgentMemory('idle after deploy');
}, 900_000);

/** Records the memory the agent container is charged now. */
async function noteAgentMemory(when: string): Promise<void> {
  try {
    const pod = (await podsOf('spire-system', AGENT_SELECTOR))[0] as PodInfo;
    const mem = containerMemory(pod.uid, pod.containers.find((c) => c.name === 'spiffe-agent')?.containerID ?? '');
    note(`agent container memory ${when}: usage ${mib(mem.usage)}, anonymous ${mib(mem.anon)} (pod ${pod.name})`);
  } catch (err) {
    note(`agent container memory ${when}: unreadable (${(err as Error).message})`);
  }
}

afterAll(async () => {
  await noteAgentMemory('at the end');
  // The agent's own counters, as Prometheus scrapes them (hostNetwork: the node's loopback).
  try {
    const metrics = await (await fetch('http://127.0.0.1:9988/metrics')).text();
    for (const l of metrics.split('\n').filter((x) => /^\w*workload_api_rpcs_total\{/.test(x))) note(`agent metric ${l}`);
  } catch (err) {
    note(`agent metrics unreadable: ${(err as Error).message}`);
  }
  // Pod logs next to the cluster's logs (kept after teardown), for whoever reads a failure.
  const logDir = process.env['E2E_LOGS'];
  if (logDir !== undefined) {
    for (const [ns, target, file] of [
      ['spire-system', 'daemonset/spiffe-agent', 'pod-spiffe-agent.log'],
      ['spire-server', 'statefulset/spiffe-server', 'pod-spiffe-server.log'],
      ['spiffe-e2e', 'deploy/e2e-workload', 'pod-e2e-workload.log'],
      ['spiffe-e2e', 'deploy/e2e-other', 'pod-e2e-other.log'],
      ['spiffe-demo', 'deploy/example-workload', 'pod-example-workload.log'],
    ] as const) {
      const r = await kubectlResult(['-n', ns, 'logs', '--all-containers', '--prefix', target]);
      writeFileSync(join(logDir, file), r.stdout + r.stderr);
    }
    const agentLog = readFileSync(join(logDir, 'pod-spiffe-agent.log'), 'utf8');
    const counts = new Map<string, number>();
    for (const m of agentLog.matchAll(/"level":"(warn|error)".*?"msg":"([^"]*)"/g)) counts.set(`${m[1]}: ${m[2]}`, (counts.get(`${m[1]}: ${m[2]}`) ?? 0) + 1);
    for (const [msg, n] of counts) note(`agent log ${n}× ${msg}`);
  }
  process.stdout.write(`\n[e2e record]\n${record.map((l) => `  ${l}`).join('\n')}\n`);
});

describe('the shipped manifests on a real node', () => {
  it('runs the server, the agent and the workloads Ready, probes passing, no restarts', async () => {
    for (const [ns, selector] of [
      ['spire-server', 'app.kubernetes.io/name=spiffe-server'],
      ['spire-system', AGENT_SELECTOR],
      ['spiffe-e2e', 'app=e2e-workload'],
    ] as const) {
      const pods = await waitFor(`${ns} ${selector} Ready`, 60_000, async () => {
        const p = await podsOf(ns, selector);
        return p.length === 1 && p[0]?.ready === true ? p : undefined;
      });
      expect(pods[0]?.containers.map((c) => [c.name, c.ready, c.restartCount]), `${ns} ${selector}`).toEqual(pods[0]?.containers.map((c) => [c.name, true, 0]));
    }
    // The agent's readiness probe is /ready on the named port healthz: Ready means it answered 200.
    const probe = await kubectl(['-n', 'spire-system', 'get', 'daemonset/spiffe-agent', '-o', 'jsonpath={.spec.template.spec.containers[0].readinessProbe.httpGet.path} {.status.numberReady}/{.status.desiredNumberScheduled}']);
    expect(probe).toBe('/ready 1/1');
  });

  it('runs the agent as shipped: non-root 65532, no capabilities, read-only root, hostPID, the socket directory handed over', async () => {
    const spec = JSON.parse(await kubectl(['-n', 'spire-system', 'get', 'pod', agentPod.name, '-o', 'jsonpath={.spec}'])) as {
      hostPID: boolean;
      containers: { name: string; securityContext: { runAsUser: number; readOnlyRootFilesystem: boolean; capabilities: { drop: string[] } } }[];
    };
    expect(spec.hostPID).toBe(true);
    const c = spec.containers.find((x) => x.name === 'spiffe-agent');
    expect([c?.securityContext.runAsUser, c?.securityContext.readOnlyRootFilesystem, c?.securityContext.capabilities.drop]).toEqual([65532, true, ['ALL']]);
    // The agent process as the host sees it: its real UID and effective capabilities.
    const cid = agentPod.containers.find((x) => x.name === 'spiffe-agent')?.containerID.replace('containerd://', '') ?? '';
    const pid = readdirSync('/proc').find((p) => {
      if (!/^\d+$/.test(p)) return false;
      try {
        return readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(cid) && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('spiffe-agent.js');
      } catch {
        return false;
      }
    });
    expect(pid, 'agent process on the host').toBeDefined();
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(/^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/)).toEqual(['65532', '65532', '65532', '65532']);
    expect(/^CapEff:\s+(\S+)$/m.exec(status)?.[1]).toBe('0000000000000000');
    const dir = statSync('/run/spire/agent-sockets');
    expect([dir.uid, dir.gid, (dir.mode & 0o7777).toString(8)]).toEqual([65532, 65532, '755']);
    expect(statSync('/run/spire/agent-sockets/spire-agent.sock').isSocket()).toBe(true);
  });

  it('attests the agent with k8s_psat through the real TokenReview: its ID carries the real node UID, its selectors are the real ones', async () => {
    const agentId = `spiffe://${TRUST_DOMAIN}/spire/agent/k8s_psat/${CLUSTER}/${nodeUid}`;
    expect(nodeUid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const list = await serverCli(['agent', 'list']);
    expect(list).toContain(`SPIFFE ID         : ${agentId}`);
    const show = await serverCli(['agent', 'show'], ['-spiffeID', agentId]);
    expect(show).toContain('Attestation type  : k8s_psat');
    expect(show).toContain('Can re-attest     : true');
    const selectors = agentSelectors(show);
    expect(selectors).toEqual(
      [
        `k8s_psat:agent_node_ip:${agentPod.hostIP}`,
        `k8s_psat:agent_node_name:${NODE}`,
        `k8s_psat:agent_node_uid:${nodeUid}`,
        'k8s_psat:agent_ns:spire-system',
        `k8s_psat:agent_pod_name:${agentPod.name}`,
        `k8s_psat:agent_pod_uid:${agentPod.uid}`,
        'k8s_psat:agent_sa:spire-agent',
        `k8s_psat:cluster:${CLUSTER}`,
      ].sort(),
    );
  });

  it('serves a go-spiffe workload (hostPath socket, SPIFFE_ENDPOINT_SOCKET) its X509-SVID and a JWT-SVID', async () => {
    const out = await fetchIn('e2e-workload', 'e2e-audience');
    expect(out.error, JSON.stringify(out)).toBeUndefined();
    expect(out.x509?.ids).toEqual([WORKLOAD_ID]);
    expect(out.x509?.id).toBe(WORKLOAD_ID);
    expect(out.x509?.bundleTrustDomains).toEqual([TRUST_DOMAIN]);
    expect(out.jwt?.id).toBe(WORKLOAD_ID);
    expect(out.jwt?.audience).toEqual(['e2e-audience']);
    expect(out.jwt?.validated).toBe(true);
    // The long-running watch got it too.
    const events = await logLines('spiffe-e2e', 'deploy/e2e-workload');
    expect(events.find((e) => e['event'] === 'x509')?.['svid']).toMatchObject({ id: WORKLOAD_ID });
  });

  it('matches entries on the real kubelet selectors: pod-label, container-name, container-image with the real image ID', async () => {
    const [pod] = await podsOf('spiffe-e2e', 'app=e2e-workload');
    const c = pod?.containers.find((x) => x.name === 'workload');
    expect(c?.image).toBe('localhost/spiffe-e2e-workload:0.1.0');
    expect(c?.imageID).toMatch(/sha256:[0-9a-f]{64}$/);
    const exact = ['k8s:ns:spiffe-e2e', 'k8s:sa:e2e-workload', 'k8s:pod-label:app:e2e-workload', 'k8s:container-name:workload'];
    await createEntry({ spiffeId: EXACT_ID, selectors: [...exact, `k8s:container-image:${c?.imageID}`] });
    // A near miss: the same selectors with another image ID is not issued.
    await createEntry({ spiffeId: WRONG_IMAGE_ID, selectors: [...exact, `k8s:container-image:${c?.imageID.replace(/[0-9a-f]{8}$/, '00000000')}`] });
    const out = await waitFor('the exact entry to reach the workload', 30_000, async () => {
      const o = await fetchIn('e2e-workload', 'e2e-audience');
      return o.x509?.ids.includes(EXACT_ID) ? o : undefined;
    });
    expect(out.x509?.ids).toEqual([WORKLOAD_ID, EXACT_ID].sort());
  });

  it('answers a pod under another service account PermissionDenied "no identity issued"', async () => {
    await kubectl(['-n', 'spiffe-e2e', 'rollout', 'status', 'deployment/e2e-other', '--timeout=120s']);
    const out = await fetchIn('e2e-other', 'e2e-audience');
    expect([out.code, out.message]).toEqual(['PermissionDenied', 'no identity issued']);
    // Its watch may have started before the agent's socket existed (then: Unavailable, "no such
    // file"); go-spiffe retries, and the answer it then gets is the same.
    const denied = await waitFor('the unregistered watch to log PermissionDenied', 60_000, async () =>
      (await logLines('spiffe-e2e', 'deploy/e2e-other')).find((l) => l['event'] === 'error' && l['code'] === 'PermissionDenied'),
    );
    expect(denied['message']).toBe('no identity issued');
    expect((await logLines('spiffe-e2e', 'deploy/e2e-other')).some((l) => l['event'] === 'x509')).toBe(false);
  });

  it('serves the shipped example workload (manifests/examples, `spiffe-agent api watch`) its SVID', async () => {
    await kubectl(['-n', 'spiffe-demo', 'rollout', 'status', 'deployment/example-workload', '--timeout=120s']);
    const logs = await waitFor('the example workload to print its SVID', 60_000, async () => {
      const out = await kubectl(['-n', 'spiffe-demo', 'logs', 'deploy/example-workload']);
      return out.includes(EXAMPLE_ID) ? out : undefined;
    });
    expect(logs).toContain(EXAMPLE_ID);
  });
});

describe('changes on the running node', () => {
  it('rollout restart of the agent DaemonSet: the workload regains its SVID without restarting; the new pod attests with its own token', async () => {
    await noteAgentMemory('after the workload tests');
    const [before] = await podsOf('spiffe-e2e', 'app=e2e-workload');
    const oldAgent = (await podsOf('spire-system', AGENT_SELECTOR))[0] as PodInfo;
    const restartAt = Date.now();
    await kubectl(['-n', 'spire-system', 'rollout', 'restart', 'daemonset/spiffe-agent']);
    await kubectl(['-n', 'spire-system', 'rollout', 'status', 'daemonset/spiffe-agent', '--timeout=180s'], undefined, 190_000);
    const newAgent = await waitFor('one new agent pod', 60_000, async () => {
      const p = await podsOf('spire-system', AGENT_SELECTOR);
      return p.length === 1 && p[0]?.name !== oldAgent.name && p[0]?.ready === true ? p[0] : undefined;
    });
    // The long-running go-spiffe watch reconnects by itself and gets the SVID again.
    const again = await waitFor('the watch to receive an X509-SVID from the new agent', 90_000, async () =>
      (await logLines('spiffe-e2e', 'deploy/e2e-workload')).find((l) => l['event'] === 'x509' && Date.parse(l['time'] as string) > restartAt),
    );
    note(`agent rollout restart → the running workload's watch has its SVID again after ${((Date.parse(again['time'] as string) - restartAt) / 1000).toFixed(1)} s`);
    expect((again['svid'] as { ids: string[] }).ids).toContain(WORKLOAD_ID);
    const [after] = await podsOf('spiffe-e2e', 'app=e2e-workload');
    expect([after?.uid, after?.containers[0]?.restartCount]).toEqual([before?.uid, before?.containers[0]?.restartCount]);
    // The new pod attested with its own projected token: the server's record names it.
    const show = await serverCli(['agent', 'show'], ['-spiffeID', `spiffe://${TRUST_DOMAIN}/spire/agent/k8s_psat/${CLUSTER}/${nodeUid}`]);
    expect(agentSelectors(show)).toEqual(expect.arrayContaining([`k8s_psat:agent_pod_name:${newAgent.name}`, `k8s_psat:agent_pod_uid:${newAgent.uid}`]));
    agentPod = newAgent;
  });

  it('takes nodes/proxy away from the agent: attestation fails and the log names the permission; given back, it recovers without a restart', async () => {
    const current = (await podsOf('spire-system', AGENT_SELECTOR))[0] as PodInfo;
    await kubectl(['patch', 'clusterrole', 'spiffe-agent', '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/rules/0/resources', value: ['pods', 'nodes'] }])]);
    let denied: FetchOut | undefined;
    try {
      denied = await waitFor('a fetch to fail without nodes/proxy', 90_000, async () => {
        const o = await fetchIn('e2e-workload', 'e2e-audience');
        return o.error !== undefined ? o : undefined;
      }, 2_000);
    } finally {
      // Back to the shipped ClusterRole (whatever happened above).
      await kubectl(['apply', '-k', join(OVERLAY, 'agent')]);
    }
    note(`without nodes/proxy a workload gets: ${denied.code} "${denied.message}"`);
    // Readiness names the missing permission too (the kubelet refused the agent).
    const down = await agentReady();
    expect([down.status, down.body.ready, down.body.kubelet?.last_request]).toEqual([500, false, 'forbidden']);
    expect(down.body.reasons).toHaveLength(1);
    expect(down.body.reasons[0]).toMatch(/^workload attestation cannot read pods from the kubelet: kubelet: GET https:\/\/node1:10250\/pods returned 403 .*Grant it "get" on "nodes\/proxy"/);
    const failures = (await logLines('spire-system', `pod/${current.name}`, 'spiffe-agent')).filter((l) => l['msg'] === 'workload attestor failed');
    const message = (failures.at(-1)?.['err'] as { message?: string } | undefined)?.message ?? '';
    expect(message).toMatch(/^kubelet: GET https:\/\/node1:10250\/pods returned 403 \(Forbidden \(user=system:serviceaccount:spire-system:spire-agent, verb=get, resource=nodes, subresource\(s\)=\[pods proxy\]\)\)/);
    expect(message).toContain('may not read pods from the kubelet. Grant it "get" on "nodes/proxy"');
    expect(denied.code).toBe('Unavailable');
    // Given back, the agent turns ready by itself: no workload asks in between (it re-asks the
    // kubelet every 10 s while refused; the kubelet caches a denial for up to 30 s).
    const upAt = Date.now();
    const up = await waitFor('/ready to recover with nodes/proxy back, no workload asking', 120_000, async () => {
      const r = await agentReady();
      return r.status === 200 ? r : undefined;
    }, 1_000);
    note(`/ready recovered ${((Date.now() - upAt) / 1000).toFixed(1)} s after nodes/proxy was given back, no workload asking`);
    expect([up.body.ready, up.body.reasons, up.body.kubelet?.last_request]).toEqual([true, [], 'ok']);
    const ok = await waitFor('a fetch to succeed with nodes/proxy back', 90_000, async () => {
      const o = await fetchIn('e2e-workload', 'e2e-audience');
      return o.error === undefined ? o : undefined;
    }, 2_000);
    expect(ok.x509?.ids).toContain(WORKLOAD_ID);
    const [agentNow] = await podsOf('spire-system', AGENT_SELECTOR);
    expect([agentNow?.name, agentNow?.containers.find((c) => c.name === 'spiffe-agent')?.restartCount]).toEqual([current.name, 0]);
  });

  it('keeps the shipped agent.json except admin_socket_path (for debug explain)', async () => {
    const shipped = JSON.parse(
      (await kubectlJson<{ data: Record<string, string> }>(['create', '--dry-run=client', '-f', join(OVERLAY, '../../../manifests/agent/configmap.yaml')])).data['agent.json'] ?? '',
    ) as { agent: Record<string, unknown> };
    const ours = JSON.parse(readFileSync(join(OVERLAY, 'agent/agent.json'), 'utf8')) as typeof shipped;
    expect(ours.agent['admin_socket_path']).toBe('/run/spire/agent-admin/admin.sock');
    delete ours.agent['admin_socket_path'];
    expect(ours).toEqual(shipped);
  });

  it('debug explain names the k8s:sa near miss of the pod under another service account, and the refusal it gets', async () => {
    const [agent] = await podsOf('spire-system', AGENT_SELECTOR);
    const [other] = await podsOf('spiffe-e2e', 'app=e2e-other');
    if (agent === undefined || other === undefined) throw new Error('agent or e2e-other pod missing');
    const run = await agentCliOnNode(['debug', 'explain', '-socketPath', adminSocketOf(agent), '-podUID', other.uid]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    note(`debug explain -podUID (e2e-other):\n${run.stdout}`);
    expect(run.stdout).toMatch(/^Attestor k8s \([\d.]+ ms\): \d+ selectors\n {2}kubelet lookup +[\d.]+ ms {2}age_ms=\d+ generation=\d+ source=/m);
    expect(run.stdout).toContain('  k8s:sa:e2e-other\n');
    expect(run.stdout).toContain('Matched entries: none');
    expect(run.stdout).toMatch(new RegExp(`Nearest misses:\\n  ${WORKLOAD_ID} \\(entry [0-9a-f-]+\\)\\n    k8s:sa:e2e-other found, entry wants k8s:sa:e2e-workload\\n`));
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('Verdict: PermissionDenied "no identity issued"');
    // The same pod's workload really gets that answer.
    const out = await fetchIn('e2e-other', 'e2e-audience');
    expect([out.code, out.message]).toEqual(['PermissionDenied', 'no identity issued']);
  });

  it('debug explain -pid of the go-spiffe workload\'s process: located by its cgroup, its entry matched with a cached SVID, verdict OK', async () => {
    const [agent] = await podsOf('spire-system', AGENT_SELECTOR);
    const [workload] = await podsOf('spiffe-e2e', 'app=e2e-workload');
    const containerId = workload?.containers.find((c) => c.name === 'workload')?.containerID.replace(/^containerd:\/\//, '');
    if (agent === undefined || workload === undefined || containerId === undefined) throw new Error('agent or e2e-workload pod missing');
    // The workload's process as the node sees it: the one whose cgroup names its container.
    const pid = readdirSync('/proc').find((d) => /^\d+$/.test(d) && (() => {
      try {
        return readFileSync(`/proc/${d}/cgroup`, 'utf8').includes(containerId);
      } catch {
        return false;
      }
    })());
    if (pid === undefined) throw new Error(`no process in container ${containerId}`);
    const run = await agentCliOnNode(['debug', 'explain', '-socketPath', adminSocketOf(agent), '-pid', pid]);
    expect([run.code, run.stderr]).toEqual([0, '']);
    note(`debug explain -pid (e2e-workload):\n${run.stdout}`);
    expect(run.stdout).toMatch(new RegExp(`^ {2}cgroup +[\\d.]+ ms {2}container_id=${containerId} pod_uid=${workload.uid}$`, 'm'));
    expect(run.stdout).toMatch(/^ {2}kubelet lookup +[\d.]+ ms {2}.*source=/m);
    expect(run.stdout).toContain('  k8s:sa:e2e-workload\n');
    expect(run.stdout).toContain(`Matched entries (`);
    expect(run.stdout).toContain(`  ${WORKLOAD_ID}\n`);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toMatch(/^Verdict: OK \(\d+ X509-SVIDs?\)$/);
  });

  it('answers a container missing from the kubelet status (slow postStart) with pod-level selectors within the bound, with its container selectors once listed', async () => {
    const LATE_ID = `spiffe://${TRUST_DOMAIN}/e2e/late-container`;
    await createEntry({ spiffeId: LATE_ID, selectors: ['k8s:ns:spiffe-e2e', 'k8s:sa:e2e-workload', 'k8s:container-name:late'] });
    await kubectl(['apply', '-k', join(OVERLAY, 'late')]);
    // Its process runs at once; the kubelet lists the container only after the 45 s hook.
    const started = await waitFor('the late container to start', 60_000, async () => hostLogLines('spiffe-e2e', 'e2e-late', 'late').find((l) => l['event'] === 'start'));
    const startedAt = Date.parse(started['time'] as string);
    const first = await waitFor('the late container\'s watch to receive an X509-SVID', 90_000, async () =>
      hostLogLines('spiffe-e2e', 'e2e-late', 'late').find((l) => l['event'] === 'x509'),
    );
    const firstAt = Date.parse(first['time'] as string);
    const before = hostLogLines('spiffe-e2e', 'e2e-late', 'late').filter((l) => l['event'] === 'error' && Date.parse(l['time'] as string) < firstAt);
    note(`late container: first X509-SVID ${((firstAt - startedAt) / 1000).toFixed(1)} s after its process started (hook: 45 s), ids ${JSON.stringify((first['svid'] as { ids: string[] }).ids)}; errors before it: ${before.map((e) => `${e['code']} "${e['message']}"`).join(', ') || 'none'}`);
    // Pod-level selectors (ns, sa) while the container is unlisted: the ns/sa entry, not the
    // container-name one. That alone shows the agent answered before the hook ended (once
    // listed, the container-name entry matches too); its delay is noted, not asserted.
    expect((first['svid'] as { ids: string[] }).ids).toEqual([WORKLOAD_ID]);
    // Once the kubelet lists it, a new caller in it gets its container selectors too.
    await kubectl(['-n', 'spiffe-e2e', 'rollout', 'status', 'deployment/e2e-late', '--timeout=120s']);
    const listed = await waitFor('the late container to get its container-level entry', 60_000, async () => {
      const o = await fetchIn('e2e-late', 'e2e-audience', 'late');
      return o.x509?.ids.includes(LATE_ID) ? o : undefined;
    }, 2_000);
    expect(listed.x509?.ids).toEqual([LATE_ID, WORKLOAD_ID].sort());
  });

  it('pushes rotations to the running workload: an entry with a 30 s X509-SVID TTL reaches its open watch renewed before expiry', async () => {
    const ROTATE_ID = `spiffe://${TRUST_DOMAIN}/e2e/rotating`;
    const createdAt = Date.now();
    await createEntry({ spiffeId: ROTATE_ID, selectors: ['k8s:ns:spiffe-e2e', 'k8s:pod-label:app:e2e-workload'], ttlSeconds: 30 });
    type Svid = { ids: string[]; notAfters: Record<string, string> };
    const expiries = await waitFor('two X509-SVIDs of the 30 s entry on the open watch', 90_000, async () => {
      const seen = (await logLines('spiffe-e2e', 'deploy/e2e-workload'))
        .filter((l) => l['event'] === 'x509' && Date.parse(l['time'] as string) >= createdAt - 1_000)
        .map((l) => ({ at: Date.parse(l['time'] as string), notAfter: (l['svid'] as Svid).notAfters?.[ROTATE_ID] }))
        .filter((e): e is { at: number; notAfter: string } => e.notAfter !== undefined);
      const distinct = seen.filter((e, i) => i === 0 || e.notAfter !== seen[i - 1]?.notAfter);
      return distinct.length >= 2 ? distinct : undefined;
    }, 2_000);
    const [a, b] = expiries as [{ at: number; notAfter: string }, { at: number; notAfter: string }];
    note(`rotation: the 30 s SVID (expiring ${a.notAfter}) was replaced on the open stream at ${new Date(b.at).toISOString()} by one expiring ${b.notAfter}`);
    expect(Date.parse(b.notAfter)).toBeGreaterThan(Date.parse(a.notAfter));
    // Pushed before the old one expired.
    expect(b.at).toBeLessThan(Date.parse(a.notAfter));
  });
});
