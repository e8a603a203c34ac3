/**
 * The csi.spiffe.io variant on a real node: the shipped driver DaemonSet (manifests/csi) with
 * spiffe-csi-driver v0.2.6 built from the Go module proxy and test/e2e/csi-registrar standing
 * in for node-driver-registrar (not on the proxy), then the shipped CSI example workload
 * (manifests/examples/csi), each through its overlay (overlay/csi swaps only the two images
 * and adds hostNetwork; overlay/examples-csi is ../examples' change). The kubelet runs with
 * its root directory at /var/lib/kubelet, as the driver's hostPaths expect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, OVERLAY, kubectl, kubectlJson, kubectlResult, podsOf, waitFor, type PodInfo } from './support/kube.ts';
import { AGENT_SELECTOR, EXAMPLE_ID, deployProduct } from './support/deploy.ts';
import { REPO } from '../support/server-process.ts';

const DRIVER_SELECTOR = 'app.kubernetes.io/name=spiffe-csi-driver';
const WORKLOAD_SELECTOR = 'app.kubernetes.io/name=example-workload-csi';
const RESTRICTED_NS = 'spiffe-e2e-restricted';
const AGENT_CLI = ['/nodejs/bin/node', '/opt/spiffe-node-agent/bin/spiffe-agent.js'];
const SOCKET = '/spiffe-workload-api/spire-agent.sock';

/** The `SPIFFE ID:` lines the workload's `spiffe-agent api watch` printed, with the kubelet's timestamps. */
async function watchedIds(): Promise<{ at: number; id: string }[]> {
  const out = await kubectl(['-n', 'spiffe-demo', 'logs', '--timestamps', 'deploy/example-workload-csi']);
  return [...out.matchAll(/^(\S+) SPIFFE ID:\s+(\S+)$/gm)].map((m) => ({ at: Date.parse(m[1] as string), id: m[2] as string }));
}

/** One `spiffe-agent api fetch x509` through the CSI volume, inside the workload's container. */
function fetchThroughCsi(): Promise<{ code: number; stdout: string; stderr: string }> {
  return kubectlResult(['-n', 'spiffe-demo', 'exec', 'deploy/example-workload-csi', '-c', 'workload', '--', ...AGENT_CLI, 'api', 'fetch', 'x509', '-socketPath', SOCKET]);
}

async function workloadPod(): Promise<PodInfo> {
  return waitFor('one Ready CSI example workload pod', 120_000, async () => {
    const p = await podsOf('spiffe-demo', WORKLOAD_SELECTOR);
    return p.length === 1 && p[0]?.ready === true ? p[0] : undefined;
  });
}

beforeAll(async () => {
  await deployProduct();
  // manifests/README.md: the driver, then the workload that mounts its volume.
  await kubectl(['apply', '-k', join(OVERLAY, 'csi')]);
  await kubectl(['-n', 'spire-system', 'rollout', 'status', 'daemonset/spiffe-csi-driver', '--timeout=180s'], undefined, 190_000);
  await kubectl(['apply', '-k', join(OVERLAY, 'examples-csi')]);
}, 900_000);

afterAll(async () => {
  await kubectlResult(['delete', 'namespace', RESTRICTED_NS, '--ignore-not-found', '--timeout=60s']);
  const logDir = process.env['E2E_LOGS'];
  if (logDir === undefined) return;
  for (const [ns, target, file] of [
    ['spire-system', 'daemonset/spiffe-csi-driver', 'pod-spiffe-csi-driver.log'],
    ['spiffe-demo', 'deploy/example-workload-csi', 'pod-example-workload-csi.log'],
  ] as const) {
    const r = await kubectlResult(['-n', ns, 'logs', '--all-containers', '--prefix', '--timestamps', target]);
    writeFileSync(join(logDir, file), r.stdout + r.stderr);
  }
});

describe('the csi.spiffe.io driver on a real node', () => {
  it('registers csi.spiffe.io with the kubelet: CSINode lists it with the node ID, the driver pod is Ready without restarts', async () => {
    const drivers = await waitFor('CSINode node1 to list csi.spiffe.io', 60_000, async () => {
      const csiNode = await kubectlJson<{ spec: { drivers: { name: string; nodeID: string }[] | null } }>(['get', 'csinode', NODE]);
      const d = (csiNode.spec.drivers ?? []).map((x) => ({ name: x.name, nodeID: x.nodeID }));
      return d.length > 0 ? d : undefined;
    });
    expect(drivers).toEqual([{ name: 'csi.spiffe.io', nodeID: NODE }]);
    const annotation = await kubectl(['get', 'node', NODE, '-o', 'jsonpath={.metadata.annotations.csi\\.volume\\.kubernetes\\.io/nodeid}']);
    expect(JSON.parse(annotation)).toEqual({ 'csi.spiffe.io': NODE });
    const driver = await kubectlJson<{ spec: Record<string, unknown> }>(['get', 'csidriver', 'csi.spiffe.io']);
    expect([driver.spec['attachRequired'], driver.spec['podInfoOnMount'], driver.spec['fsGroupPolicy'], driver.spec['volumeLifecycleModes']]).toEqual([false, true, 'None', ['Ephemeral']]);
    // The kubelet told the registrar it took the plugin.
    const reg = await kubectl(['-n', 'spire-system', 'logs', 'daemonset/spiffe-csi-driver', '-c', 'node-driver-registrar']);
    expect(reg).toContain('"msg":"kubelet registered the plugin"');
    const pods = await waitFor('the driver pod Ready', 60_000, async () => {
      const p = await podsOf('spire-system', DRIVER_SELECTOR);
      return p.length === 1 && p[0]?.ready === true ? p : undefined;
    });
    expect(pods[0]?.containers.map((c) => [c.name, c.ready, c.restartCount])).toEqual([
      ['node-driver-registrar', true, 0],
      ['spiffe-csi-driver', true, 0],
    ]);
  });

  it('admits the shipped CSI workload under the "restricted" Pod Security Standard and refuses the hostPath one', async () => {
    // The shipped pod templates as they are (the e2e node needs hostNetwork, which "restricted"
    // forbids, so the pods that run here cannot show it): a server-side dry run in a namespace
    // that enforces "restricted".
    await kubectl(
      ['apply', '-f', '-'],
      [
        `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${RESTRICTED_NS}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n`,
        `apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: example-workload\n  namespace: ${RESTRICTED_NS}\n`,
      ].join('---\n'),
    );
    const podFrom = async (dir: string, deployment: string): Promise<string> => {
      const docs = (await kubectl(['kustomize', join(REPO, dir)])).split(/^---$/m);
      const doc = docs.find((d) => /^kind: Deployment$/m.test(d) && new RegExp(`^  name: ${deployment}$`, 'm').test(d));
      if (doc === undefined) throw new Error(`no Deployment ${deployment} in ${dir}`);
      const json = JSON.parse(await kubectl(['create', '--dry-run=client', '-o', 'json', '-f', '-'], doc)) as { spec: { template: { metadata: Record<string, unknown>; spec: unknown } } };
      return JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { ...json.spec.template.metadata, name: deployment, namespace: RESTRICTED_NS }, spec: json.spec.template.spec });
    };
    const csi = await kubectlResult(['create', '--dry-run=server', '-f', '-'], await podFrom('manifests/examples/csi', 'example-workload-csi'));
    expect([csi.code, csi.stderr, csi.stdout.trim()]).toEqual([0, '', 'pod/example-workload-csi created (server dry run)']);
    const hostPath = await kubectlResult(['create', '--dry-run=server', '-f', '-'], await podFrom('manifests/examples', 'example-workload'));
    expect(hostPath.code).toBe(1);
    expect(hostPath.stderr.trim()).toBe(
      `Error from server (Forbidden): error when creating "STDIN": pods "example-workload" is forbidden: violates PodSecurity "restricted:latest": restricted volume types (volume "spiffe-workload-api" uses restricted volume type "hostPath")`,
    );
  });

  it('serves the shipped CSI example workload its SVID through the csi.spiffe.io volume', async () => {
    const pod = await workloadPod();
    expect(pod.containers.map((c) => [c.name, c.restartCount])).toEqual([['workload', 0]]);
    // The driver bind-mounted the agent's socket directory at the kubelet's target path.
    const target = `/var/lib/kubelet/pods/${pod.uid}/volumes/kubernetes.io~csi/spiffe-workload-api/mount`;
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]);
    expect(mounts).toContain(target);
    expect(statSync(join(target, 'spire-agent.sock')).isSocket()).toBe(true);
    const ids = await waitFor('the workload watch to print its SVID', 60_000, async () => {
      const w = await watchedIds();
      return w.length > 0 ? w : undefined;
    });
    expect(ids[0]?.id).toBe(EXAMPLE_ID);
    const fetched = await fetchThroughCsi();
    expect([fetched.code, fetched.stderr]).toEqual([0, '']);
    expect(fetched.stdout).toMatch(new RegExp(`^SPIFFE ID:\\t+${EXAMPLE_ID.replace(/[./]/g, '\\$&')}$`, 'm'));
  });

  it('rollout restart of the agent DaemonSet: the CSI workload regains its SVID through the same mount without restarting', async () => {
    const before = await workloadPod();
    const oldAgent = (await podsOf('spire-system', AGENT_SELECTOR))[0] as PodInfo;
    const restartAt = Date.now();
    await kubectl(['-n', 'spire-system', 'rollout', 'restart', 'daemonset/spiffe-agent']);
    await kubectl(['-n', 'spire-system', 'rollout', 'status', 'daemonset/spiffe-agent', '--timeout=180s'], undefined, 190_000);
    await waitFor('one new Ready agent pod', 60_000, async () => {
      const p = await podsOf('spire-system', AGENT_SELECTOR);
      return p.length === 1 && p[0]?.name !== oldAgent.name && p[0]?.ready === true ? p[0] : undefined;
    });
    // The long-running `api watch` reconnects through the same bind mount and prints the SVID again.
    const again = await waitFor('the CSI workload watch to print its SVID from the new agent', 90_000, async () =>
      (await watchedIds()).find((l) => l.at > restartAt),
    );
    expect(again.id).toBe(EXAMPLE_ID);
    process.stdout.write(`[e2e record] agent rollout restart → the CSI workload's watch has its SVID again after ${((again.at - restartAt) / 1000).toFixed(1)} s\n`);
    const fetched = await fetchThroughCsi();
    expect([fetched.code, fetched.stderr]).toEqual([0, '']);
    expect(fetched.stdout).toContain(EXAMPLE_ID);
    const after = await workloadPod();
    expect([after.uid, after.containers[0]?.restartCount]).toEqual([before.uid, before.containers[0]?.restartCount]);
  });
});
