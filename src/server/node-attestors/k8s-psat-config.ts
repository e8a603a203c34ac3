/**
 * The server's `NodeAttestor "k8s_psat"` plugin_data, in SPIRE's exact shape:
 *
 *   clusters = {
 *     "<name>" = {
 *       service_account_allow_list = ["<namespace>:<service account>"]
 *       audience = ["spire-server"]            # default; [] means the apiserver's own audience
 *       kube_config_file = ""                  # "" means in-cluster configuration
 *       allowed_node_label_keys = []
 *       allowed_pod_label_keys = []
 *       use_pod_uid_for_agent_id = false
 *     }
 *   }
 *
 * Parsing is pure (reader in, config out); nothing is read from disk here.
 */
import { resolve } from 'node:path';
import type { ConfigReader } from '../../common/config-reader.ts';
import { ApiError, Code } from '../../common/errors.ts';

/** The audience SPIRE requests when a cluster does not configure one. */
export const K8S_PSAT_DEFAULT_AUDIENCE: readonly string[] = ['spire-server'];

/** One cluster the server accepts k8s_psat agents from. */
export interface K8sPsatClusterConfig {
  /** The cluster name agents send in their payload; it becomes an agent ID path segment. */
  readonly name: string;
  /** Allowed `<namespace>:<service account>` pairs. */
  readonly serviceAccountAllowList: ReadonlySet<string>;
  /** Audiences requested in the TokenReview; empty means the apiserver's own audience. */
  readonly audience: readonly string[];
  /** Absolute kubeconfig path, or '' for the in-cluster configuration. */
  readonly kubeConfigFile: string;
  readonly allowedNodeLabelKeys: ReadonlySet<string>;
  readonly allowedPodLabelKeys: ReadonlySet<string>;
  /** Agent ID ends with `pod/<pod-uid>` instead of `<node-uid>`. */
  readonly usePodUidForAgentId: boolean;
}

/** The parsed server-side k8s_psat plugin_data. */
export interface K8sPsatServerConfig {
  readonly clusters: ReadonlyMap<string, K8sPsatClusterConfig>;
}

const CLUSTER_KEYS: readonly string[] = [
  'service_account_allow_list',
  'audience',
  'kube_config_file',
  'allowed_node_label_keys',
  'allowed_pod_label_keys',
  'use_pod_uid_for_agent_id',
];

/** Cluster names become one agent ID path segment, so they must be valid as one. */
const CLUSTER_NAME = /^[A-Za-z0-9._-]+$/;

function parseCluster(name: string, reader: ConfigReader, cwd: string): K8sPsatClusterConfig {
  reader.done(CLUSTER_KEYS);
  if (!CLUSTER_NAME.test(name) || name === '.' || name === '..') {
    throw new ApiError(Code.INVALID_ARGUMENT, `config: ${reader.path}: the cluster name must be usable as a SPIFFE ID path segment (letters, digits, ".", "-", "_")`);
  }
  const allowList = reader.stringList('service_account_allow_list');
  if (allowList.length === 0) {
    reader.fail('service_account_allow_list', `cluster "${name}" configuration must have at least one service account allowed (for example ["spire:spire-agent"])`);
  }
  for (const sa of allowList) {
    const parts = sa.split(':');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      reader.fail('service_account_allow_list', `"${sa}" must be "<namespace>:<service account>" (for example "spire:spire-agent")`);
    }
  }
  // Absent means SPIRE's default; an explicit empty list means "the apiserver's audience".
  const audience = reader.has('audience') ? reader.stringList('audience') : [...K8S_PSAT_DEFAULT_AUDIENCE];
  const kubeConfigFile = reader.string('kube_config_file', '');
  return {
    name,
    serviceAccountAllowList: new Set(allowList),
    audience,
    kubeConfigFile: kubeConfigFile === '' ? '' : resolve(cwd, kubeConfigFile),
    allowedNodeLabelKeys: new Set(reader.stringList('allowed_node_label_keys')),
    allowedPodLabelKeys: new Set(reader.stringList('allowed_pod_label_keys')),
    usePodUidForAgentId: reader.bool('use_pod_uid_for_agent_id', false),
  };
}

/**
 * Parses the server's `NodeAttestor "k8s_psat" { plugin_data { clusters = {…} } }`.
 * No clusters is accepted (SPIRE only notes that attestation is then effectively disabled);
 * every configured cluster needs at least one allowed service account. Relative kubeconfig
 * paths resolve against `cwd`.
 */
export function parseK8sPsatServerConfig(pluginData: ConfigReader, cwd = process.cwd()): K8sPsatServerConfig {
  pluginData.done(['clusters']);
  const clusters = new Map<string, K8sPsatClusterConfig>();
  for (const [name, reader] of pluginData.labelled('clusters')) clusters.set(name, parseCluster(name, reader, cwd));
  return { clusters };
}
