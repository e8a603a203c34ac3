/**
 * Options of the `k8s` workload attestor, and their defaults, filled in one place.
 * Field names follow SPIRE's `plugin_data` keys for `WorkloadAttestor "k8s"`
 * (`doc/plugin_agent_workloadattestor_k8s.md`), shown in parentheses.
 */
import { ApiError, Code } from '../../../common/errors.ts';
import type { Logger } from '../../../common/logger.ts';
import type { KubeletTransport } from './kubelet-client.ts';
import type { K8sAttestorMetrics, KubeletOutcomeListener } from './metrics.ts';
import type { TimerClock } from './pod-index.ts';

/**
 * Options of the `k8s` attestor. Field names follow SPIRE's `plugin_data` keys (in
 * parentheses); every field but `logger` is optional.
 */
export interface K8sAttestorOptions {
  /** Kubelet HTTPS port (`kubelet_secure_port`). Default 10250. */
  kubeletSecurePort?: number;
  /** PEM bundle of the kubelet CA (`kubelet_ca_path`). Default `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`. */
  kubeletCaPath?: string;
  /** Do not verify the kubelet's certificate (`skip_kubelet_verification`). Default false; logged as a warning. */
  skipKubeletVerification?: boolean;
  /** Bearer token for the kubelet, trimmed, re-read per request (`token_path`). Default `/var/run/secrets/kubernetes.io/serviceaccount/token`. */
  tokenPath?: string;
  /** Client certificate instead of a token (`certificate_path`; needs `private_key_path`). */
  certificatePath?: string;
  /** Key of the client certificate (`private_key_path`). */
  privateKeyPath?: string;
  /** Send no credentials (`use_anonymous_authentication`). Default false. */
  useAnonymousAuthentication?: boolean;
  /** Environment variable holding the node name (`node_name_env`). Default `MY_NODE_NAME`. */
  nodeNameEnv?: string;
  /**
   * Node name (`node_name`); wins over `nodeNameEnv`. With a node name the kubelet is
   * reached at `https://<node>:<port>` and its certificate must be valid for that name;
   * without one, at `https://127.0.0.1:<port>` with chain-only verification.
   */
  nodeName?: string;
  /** Pod-list generations to examine before giving up (`max_poll_attempts`). Default 60; 0 means the default. */
  maxPollAttempts?: number;
  /** Minimum time between kubelet requests and between attempts (`poll_retry_interval`), ms. Default 500; 0 means the default. */
  pollRetryIntervalMs?: number;
  /** Emit pod-level selectors only, without waiting for the container (`disable_container_selectors`). Default false. */
  disableContainerSelectors?: boolean;
  /**
   * How long a fetched pod list answers callers whose pod and container it lists, ms
   * (`pod_list_max_age`, not a SPIRE setting). Default 10 s. This is the staleness bound
   * on the mutable pod fields that selectors use (labels, owner references, the images of
   * the pod's other containers); namespace, name, UID, service account and node never
   * change for a pod, and a container's own name and image come with its container ID (a
   * new image is a new container, hence an unknown ID, hence a refetch). An unknown pod or
   * container refetches at once (paced by `pollRetryIntervalMs`) whatever the age. SPIRE
   * refetches after `poll_retry_interval`: set this equal to it for SPIRE's behaviour.
   */
  podListMaxAgeMs?: number;
  logger: Logger;
  /** Kubelet requests and pod-index hits/misses are recorded here; nothing is recorded when absent. */
  metrics?: K8sAttestorMetrics;
  /** Told how each kubelet request ended, with its error message (the agent's health reports the last one). */
  onKubeletOutcome?: KubeletOutcomeListener;
  /** Test seam: where the host's procfs is mounted. Default `$HOST_PROC` if set and non-empty, else `/proc`. */
  procRoot?: string;
  /** Test seam: time and timers of the pod index and the bounded wait. */
  clock?: TimerClock;
  /** Test seam: sends the kubelet requests instead of node:https (replaces the TLS setup). */
  transport?: KubeletTransport;
  /** Test seam: `https://127.0.0.1:<port>` to connect to instead of `https://<node>:<port>`; TLS names are unchanged. */
  baseUrl?: string;
  /** Test seam: the environment read for `nodeNameEnv` and `HOST_PROC`. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Test seam: kubelet request timeout, ms. Default 10 s. */
  kubeletTimeoutMs?: number;
}

/** The options with every default applied (see {@link resolveK8sOptions}). */
export interface ResolvedK8sOptions {
  readonly kubeletSecurePort: number;
  readonly kubeletCaPath: string;
  readonly skipKubeletVerification: boolean;
  readonly tokenPath: string;
  readonly certificatePath: string | undefined;
  readonly privateKeyPath: string | undefined;
  readonly useAnonymousAuthentication: boolean;
  /** The node name from `nodeName` or the `nodeNameEnv` variable; undefined means 127.0.0.1. */
  readonly nodeName: string | undefined;
  readonly maxPollAttempts: number;
  readonly pollRetryIntervalMs: number;
  readonly disableContainerSelectors: boolean;
  readonly podListMaxAgeMs: number;
  readonly procRoot: string;
}

/** Defaults, as in SPIRE. */
export const K8S_DEFAULTS = {
  kubeletSecurePort: 10250,
  kubeletCaPath: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  tokenPath: '/var/run/secrets/kubernetes.io/serviceaccount/token',
  nodeNameEnv: 'MY_NODE_NAME',
  maxPollAttempts: 60,
  pollRetryIntervalMs: 500,
  podListMaxAgeMs: 10_000,
} as const;

/**
 * Fills in defaults and checks the options. Empty strings count as unset, and zero or
 * negative numbers mean "the default", as in SPIRE; a non-integer number is an error
 * (ApiError INVALID_ARGUMENT).
 */
export function resolveK8sOptions(options: K8sAttestorOptions): ResolvedK8sOptions {
  const env = options.env ?? process.env;
  const pollRetryIntervalMs = positiveOrDefault(options.pollRetryIntervalMs, K8S_DEFAULTS.pollRetryIntervalMs, 'poll_retry_interval');
  return {
    kubeletSecurePort: positiveOrDefault(options.kubeletSecurePort, K8S_DEFAULTS.kubeletSecurePort, 'kubelet_secure_port'),
    kubeletCaPath: options.kubeletCaPath || K8S_DEFAULTS.kubeletCaPath,
    skipKubeletVerification: options.skipKubeletVerification ?? false,
    tokenPath: options.tokenPath || K8S_DEFAULTS.tokenPath,
    certificatePath: options.certificatePath || undefined,
    privateKeyPath: options.privateKeyPath || undefined,
    useAnonymousAuthentication: options.useAnonymousAuthentication ?? false,
    nodeName: options.nodeName || env[options.nodeNameEnv || K8S_DEFAULTS.nodeNameEnv] || undefined,
    maxPollAttempts: positiveOrDefault(options.maxPollAttempts, K8S_DEFAULTS.maxPollAttempts, 'max_poll_attempts'),
    pollRetryIntervalMs,
    disableContainerSelectors: options.disableContainerSelectors ?? false,
    podListMaxAgeMs: positiveOrDefault(options.podListMaxAgeMs, K8S_DEFAULTS.podListMaxAgeMs, 'pod_list_max_age'),
    procRoot: options.procRoot ?? (env['HOST_PROC'] || '/proc'),
  };
}

/** SPIRE treats zero and negative values as "use the default"; a non-integer is a mistake. */
function positiveOrDefault(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value)) throw new ApiError(Code.INVALID_ARGUMENT, `k8s: ${name} must be an integer, not ${value}`);
  return value > 0 ? value : fallback;
}
