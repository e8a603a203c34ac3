/**
 * Puts the product on the e2e cluster the way manifests/README.md tells a user to ("Without
 * SPIRE"): the server (manifests/server), its bundle into ConfigMap spire-bundle, the
 * node-alias and workload entries, then the agent (manifests/) and the workloads, each through
 * its overlay in test/e2e/overlay. Idempotent: every test file that needs the product calls
 * it, and only the first one (in a run) deploys.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CLUSTER, OVERLAY, TRUST_DOMAIN, createEntry, kubectl, kubectlResult, serverCli, waitFor } from './kube.ts';

export const ALIAS = `spiffe://${TRUST_DOMAIN}/k8s-cluster/${CLUSTER}`;
export const WORKLOAD_ID = `spiffe://${TRUST_DOMAIN}/e2e/workload`;
export const EXAMPLE_ID = `spiffe://${TRUST_DOMAIN}/ns/spiffe-demo/sa/example-workload`;
export const AGENT_SELECTOR = 'app.kubernetes.io/name=spiffe-agent';

export interface Deployed {
  /** Whether this call deployed it (false: an earlier test file did). */
  fresh: boolean;
  /** When the agent was applied (fresh only). */
  applyAt: number;
}

/** Deploys the server, the agent and the workloads unless an earlier test file did; waits for the agent's rollout. */
export async function deployProduct(): Promise<Deployed> {
  if ((await kubectlResult(['-n', 'spire-system', 'get', 'daemonset/spiffe-agent'])).code === 0) {
    await kubectl(['-n', 'spire-system', 'rollout', 'status', 'daemonset/spiffe-agent', '--timeout=300s'], undefined, 310_000);
    return { fresh: false, applyAt: 0 };
  }
  // 1. The server, and its bundle for the agents (manifests/README.md "Without SPIRE").
  await kubectl(['apply', '-k', join(OVERLAY, 'server')]);
  await kubectl(['-n', 'spire-server', 'rollout', 'status', 'statefulset/spiffe-server', '--timeout=300s'], undefined, 310_000);
  const bundle = await waitFor('the server admin socket', 60_000, async () => {
    const pem = await serverCli(['bundle', 'show']);
    return pem.includes('BEGIN CERTIFICATE') ? pem : undefined;
  });
  await kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: spire-system\n');
  const bundleFile = join(mkdtempSync(join(tmpdir(), 'sna-e2e-')), 'bundle.crt');
  writeFileSync(bundleFile, bundle);
  await kubectl(['-n', 'spire-system', 'create', 'configmap', 'spire-bundle', `--from-file=${bundleFile}`]);
  rmSync(dirname(bundleFile), { recursive: true });

  // 2. Entries: a node alias every agent of the cluster gets, the workloads under it.
  await createEntry({ spiffeId: ALIAS, node: true, selectors: [`k8s_psat:cluster:${CLUSTER}`] });
  await createEntry({ spiffeId: WORKLOAD_ID, selectors: ['k8s:ns:spiffe-e2e', 'k8s:sa:e2e-workload'] });
  await createEntry({ spiffeId: EXAMPLE_ID, selectors: ['k8s:ns:spiffe-demo', 'k8s:sa:example-workload'] });

  // 3. The agent, then the workloads at once (the agent must serve them as soon as it can).
  const applyAt = Date.now();
  await kubectl(['apply', '-k', join(OVERLAY, 'agent')]);
  await kubectl(['apply', '-k', join(OVERLAY, 'workloads')]);
  await kubectl(['apply', '-k', join(OVERLAY, 'examples')]);
  await kubectl(['-n', 'spire-system', 'rollout', 'status', 'daemonset/spiffe-agent', '--timeout=300s'], undefined, 310_000);
  return { fresh: true, applyAt };
}
