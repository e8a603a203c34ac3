/**
 * Options of the `k8s` workload attestor, and their defaults, filled in one place.
 * Field names follow SPIRE's `plugin_data` keys for `WorkloadAttestor "k8s"`
 * (`doc/plugin_agent_workloadattestor_k8s.md`), shown in parentheses.
 */
import type { Dispatcher } from 'undici';
import { ApiError, Code } from '../../../common/errors.ts';
import type { Logger } from '../../../common/logger.ts';
import type { K8sAttestorMetrics } from './metrics.ts';
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
   * How long a fetched pod list is served to callers that have not looked at it yet, ms.
   * Not a SPIRE setting; default `pollRetryIntervalMs`, which is SPIRE's behaviour.
   */
  podListMaxAgeMs?: number;
  logger: Logger;
  /** Kubelet requests and pod-index hits/misses are recorded here; nothing is recorded when absent. */
  metrics?: K8sAttestorMetrics;
  /** Test seam: where the host's procfs is mounted. Default `$HOST_PROC` if set and non-empty, else `/proc`. */
  procRoot?: string;
  /** Test seam: time and timers of the pod index and the bounded wait. */
  clock?: TimerClock;
  /** Test seam: the undici dispatcher for kubelet requests (replaces the TLS setup). */
  dispatcher?: Dispatcher;
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
    podListMaxAgeMs: positiveOrDefault(options.podListMaxAgeMs, pollRetryIntervalMs, 'pod list max age'),
    procRoot: options.procRoot ?? (env['HOST_PROC'] || '/proc'),
  };
}

/** SPIRE treats zero and negative values as "use the default"; a non-integer is a mistake. */
function positiveOrDefault(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value)) throw new ApiError(Code.INVALID_ARGUMENT, `k8s: ${name} must be an integer, not ${value}`);
  return value > 0 ? value : fallback;
}
