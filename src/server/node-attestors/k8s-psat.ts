/**
 * k8s_psat node attestation, server side, with SPIRE's semantics
 * (pkg/server/plugin/nodeattestor/k8spsat/psat.go):
 *
 *   payload {cluster, token} → configured cluster → TokenReview (audience) → authenticated
 *   → `ns:sa` allowed → pod from the token still exists with the same UID → its node has a UID
 *   → agent ID `spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node-uid>` + node selectors.
 *
 * Error codes follow SPIRE: a malformed payload or unknown cluster is InvalidArgument; a token
 * the apiserver does not authenticate, a service account outside the allow list, or a pod
 * UID that no longer matches is PermissionDenied; an apiserver that cannot be asked, or whose
 * TokenReview reports an error (expired, badly signed or wrong-audience tokens on a real
 * apiserver), is Internal, so agents retry. Tokens are never logged or echoed.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import type { Selector } from '../datastore/types.ts';
import type { K8sPsatClusterConfig, K8sPsatServerConfig } from './k8s-psat-config.ts';
import { createKubeApiClientFactory, type KubeApiClientFactory, type KubeNode, type KubePod, type TokenReviewStatus } from './kube-api-client.ts';
import type { NodeAttestationResult, NodeAttestor } from './node-attestor.ts';

/** TokenReview `status.user.extra` keys the apiserver sets for pod-bound tokens. */
export const POD_NAME_EXTRA_KEY = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA_KEY = 'authentication.kubernetes.io/pod-uid';

/** Options of the server-side k8s_psat attestor. */
export interface K8sPsatAttestorOptions {
  trustDomain: string;
  config: K8sPsatServerConfig;
  /** Makes the apiserver client of a cluster, once per attestation. Default: @kubernetes/client-node. */
  clientFactory?: KubeApiClientFactory;
}

const PLUGIN = 'k8s_psat';

function fail(code: Code, message: string): ApiError {
  return new ApiError(code, `${PLUGIN}: ${message}`);
}

function detail(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The `{cluster, token}` payload, or InvalidArgument. */
export function parsePsatPayload(payload: Buffer): { cluster: string; token: string } {
  if (payload.length === 0) throw fail(Code.INVALID_ARGUMENT, 'missing attestation payload');
  let data: unknown;
  try {
    data = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw fail(Code.INVALID_ARGUMENT, `failed to unmarshal data payload: ${detail(err)}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw fail(Code.INVALID_ARGUMENT, 'failed to unmarshal data payload: expected a JSON object');
  }
  const { cluster, token } = data as { cluster?: unknown; token?: unknown };
  if ((cluster !== undefined && typeof cluster !== 'string') || (token !== undefined && typeof token !== 'string')) {
    throw fail(Code.INVALID_ARGUMENT, 'failed to unmarshal data payload: "cluster" and "token" must be strings');
  }
  if (cluster === undefined || cluster === '') throw fail(Code.INVALID_ARGUMENT, 'missing cluster in attestation data');
  if (token === undefined || token === '') throw fail(Code.INVALID_ARGUMENT, 'missing token in attestation data');
  return { cluster, token };
}

/** `system:serviceaccount:<ns>:<sa>` → [ns, sa], as SPIRE's GetNamesFromTokenStatus. */
export function serviceAccountFromUsername(username: string): [string, string] {
  if (username === '') throw new Error('empty username');
  const names = username.split(':');
  if (names.length !== 4) throw new Error(`unexpected username format: ${username}`);
  const [, , namespace, serviceAccount] = names as [string, string, string, string];
  if (namespace === '') throw new Error('missing namespace');
  if (serviceAccount === '') throw new Error('missing service account name');
  return [namespace, serviceAccount];
}

/** The single value of a TokenReview `user.extra` key. */
function singleExtra(status: TokenReviewStatus, key: string, what: string): string {
  const values = status.user.extra[key];
  if (values === undefined) throw new Error(`missing ${what}`);
  if (values.length !== 1) throw new Error(`expected 1 ${what === 'pod name' ? 'name' : 'UID'} but got: ${values.length}`);
  const value = values[0] as string;
  if (value === '') throw new Error(`${what} is empty`);
  return value;
}

/** Label selectors for the allowed keys, sorted by key so the selector list is stable. */
function labelSelectors(kind: string, labels: Record<string, string>, allowed: ReadonlySet<string>): string[] {
  return Object.keys(labels)
    .filter((key) => allowed.has(key))
    .sort()
    .map((key) => `${kind}:${key}:${labels[key] as string}`);
}

/** The node selector values, in SPIRE's order. */
export function psatSelectorValues(input: {
  cluster: K8sPsatClusterConfig;
  namespace: string;
  serviceAccount: string;
  podName: string;
  podUid: string;
  pod: KubePod;
  node: KubeNode;
}): string[] {
  return [
    `cluster:${input.cluster.name}`,
    `agent_ns:${input.namespace}`,
    `agent_sa:${input.serviceAccount}`,
    `agent_pod_name:${input.podName}`,
    `agent_pod_uid:${input.podUid}`,
    `agent_node_ip:${input.pod.hostIp}`,
    `agent_node_name:${input.pod.nodeName}`,
    `agent_node_uid:${input.node.uid}`,
    ...labelSelectors('agent_node_label', input.node.labels, input.cluster.allowedNodeLabelKeys),
    ...labelSelectors('agent_pod_label', input.pod.labels, input.cluster.allowedPodLabelKeys),
  ];
}

/** Creates the server-side k8s_psat attestor. */
export function createK8sPsatAttestor(opts: K8sPsatAttestorOptions): NodeAttestor {
  const clientFactory = opts.clientFactory ?? createKubeApiClientFactory();

  async function attest(payload: Buffer): Promise<NodeAttestationResult> {
    const data = parsePsatPayload(payload);
    const cluster = opts.config.clusters.get(data.cluster);
    if (cluster === undefined) {
      // The name comes from an unauthenticated caller: quote it, and keep logs bounded.
      const shown = data.cluster.length > 128 ? `${data.cluster.slice(0, 128)}…` : data.cluster;
      throw fail(Code.INVALID_ARGUMENT, `not configured for cluster ${JSON.stringify(shown)}`);
    }
    const c = JSON.stringify(cluster.name);
    const client = clientFactory(cluster.kubeConfigFile);

    let status: TokenReviewStatus;
    try {
      status = await client.reviewToken(data.token, cluster.audience);
    } catch (err) {
      throw fail(Code.INTERNAL, `unable to validate token with TokenReview API for cluster ${c}: ${detail(err)}`);
    }
    if (status.error !== '') {
      throw fail(Code.INTERNAL, `unable to validate token with TokenReview API for cluster ${c}: token review API response contains an error: ${status.error}`);
    }
    // The status must name one of the requested audiences: proof that the reviewer is audience-aware.
    if (status.authenticated && cluster.audience.length > 0 && !cluster.audience.some((a) => status.audiences.includes(a))) {
      throw fail(
        Code.INTERNAL,
        `unable to validate token with TokenReview API for cluster ${c}: token review API did not validate audience: ` +
          `wanted one of ${JSON.stringify(cluster.audience)} but got ${JSON.stringify(status.audiences)}`,
      );
    }
    if (!status.authenticated) throw fail(Code.PERMISSION_DENIED, `token not authenticated according to TokenReview API for cluster ${c}`);

    let namespace: string;
    let serviceAccount: string;
    try {
      [namespace, serviceAccount] = serviceAccountFromUsername(status.user.username);
    } catch (err) {
      throw fail(Code.INTERNAL, `failed to parse username from token review status for cluster ${c}: ${detail(err)}`);
    }
    const fullName = `${namespace}:${serviceAccount}`;
    if (!cluster.serviceAccountAllowList.has(fullName)) {
      throw fail(Code.PERMISSION_DENIED, `"${fullName}" is not an allowed service account for cluster ${c}`);
    }

    let podName: string;
    let podUid: string;
    try {
      podName = singleExtra(status, POD_NAME_EXTRA_KEY, 'pod name');
    } catch (err) {
      throw fail(Code.INTERNAL, `failed to get pod name from token review status for cluster ${c}: ${detail(err)}`);
    }
    try {
      podUid = singleExtra(status, POD_UID_EXTRA_KEY, 'pod UID');
    } catch (err) {
      throw fail(Code.INTERNAL, `failed to get pod UID from token review status for cluster ${c}: ${detail(err)}`);
    }

    let pod: KubePod;
    try {
      pod = await client.getPod(namespace, podName);
    } catch (err) {
      throw fail(Code.INTERNAL, `failed to get pod from k8s API server for cluster ${c}: ${detail(err)}`);
    }
    // A recreated pod (same name, new UID) must not inherit the old pod's token.
    if (pod.uid !== podUid) {
      throw fail(Code.PERMISSION_DENIED, `pod UID mismatch for pod "${podName}" in cluster ${c}: token bound to pod UID "${podUid}"`);
    }

    if (pod.nodeName === '') throw fail(Code.INTERNAL, `failed to get node from k8s API server for cluster ${c}: empty node name`);
    let node: KubeNode;
    try {
      node = await client.getNode(pod.nodeName);
    } catch (err) {
      throw fail(Code.INTERNAL, `failed to get node from k8s API server for cluster ${c}: ${detail(err)}`);
    }
    if (node.uid === '') throw fail(Code.INTERNAL, `node UID is empty for cluster ${c}`);

    const suffix = cluster.usePodUidForAgentId ? `pod/${podUid}` : node.uid;
    const agentId = parseSpiffeId(`spiffe://${opts.trustDomain}/spire/agent/${PLUGIN}/${cluster.name}/${suffix}`);
    if (!agentId.ok) throw fail(Code.INTERNAL, `cannot build the agent ID for cluster ${c}: ${agentId.error}`);

    const values = psatSelectorValues({ cluster, namespace, serviceAccount, podName, podUid, pod, node });
    const selectors: Selector[] = values.map((value) => ({ type: PLUGIN, value }));
    return { agentId: agentId.value.uri, selectors, canReattest: true };
  }

  return { type: PLUGIN, attest };
}
