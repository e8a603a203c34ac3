/**
 * The three kube-apiserver calls k8s_psat needs (TokenReview, get pod, get node), through
 * @kubernetes/client-node, narrowed to the fields the attestor reads.
 *
 * As in SPIRE, the configuration is loaded again for every attestation (a factory call makes
 * a fresh client), so a rotated kubeconfig or in-cluster token is picked up without a
 * restart. The library is imported on first use only: servers without k8s_psat never pay
 * for loading it. Error messages are unprefixed details that the attestor wraps with its
 * own `k8s_psat: …` context.
 */
import type { KubeConfig, V1Pod, V1Node, V1TokenReview } from '@kubernetes/client-node';
import { ApiError, Code } from '../../common/errors.ts';

/** What the TokenReview API answered (`status` of authentication.k8s.io/v1 TokenReview). */
export interface TokenReviewStatus {
  authenticated: boolean;
  /** Non-empty when the apiserver could not check the token (expired, bad signature, …). */
  error: string;
  audiences: string[];
  user: { username: string; uid: string; groups: string[]; extra: Record<string, string[]> };
}

/** The pod fields k8s_psat reads. */
export interface KubePod {
  uid: string;
  nodeName: string;
  /** `status.hostIP`; empty while the pod is not yet scheduled. */
  hostIp: string;
  labels: Record<string, string>;
}

/** The node fields k8s_psat reads. */
export interface KubeNode {
  uid: string;
  labels: Record<string, string>;
}

/** A client for one cluster's apiserver. */
export interface KubeApiClient {
  /** POSTs a TokenReview with `spec.token` and `spec.audiences` (omitted when empty). */
  reviewToken(token: string, audiences: readonly string[]): Promise<TokenReviewStatus>;
  getPod(namespace: string, name: string): Promise<KubePod>;
  getNode(name: string): Promise<KubeNode>;
}

/** Makes a client from a kubeconfig path ('' for the in-cluster configuration). */
export type KubeApiClientFactory = (kubeConfigFile: string) => KubeApiClient;

/** Options of the @kubernetes/client-node backed factory. */
export interface KubeApiClientOptions {
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
  /** Environment for the in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT). Default process.env. */
  env?: NodeJS.ProcessEnv;
}

type ClientLib = typeof import('@kubernetes/client-node');

let libPromise: Promise<ClientLib> | undefined;
function loadLib(): Promise<ClientLib> {
  libPromise ??= import('@kubernetes/client-node');
  return libPromise;
}

function internal(message: string): ApiError {
  return new ApiError(Code.INTERNAL, message);
}

/** Describes a failed call: the apiserver's Status message when there is one, else the transport error. */
function describeKubeError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `timed out after ${timeoutMs}ms`;
  const e = err as { code?: unknown; body?: unknown; message?: unknown; cause?: unknown };
  if (typeof e.code === 'number') {
    let message = e.code === 401 ? 'Unauthorized' : `HTTP ${e.code}`;
    if (typeof e.body === 'string' && e.body !== '') {
      try {
        const status = JSON.parse(e.body) as { message?: unknown };
        if (typeof status.message === 'string' && status.message !== '') message = status.message;
      } catch {
        // Not a Status body: keep the HTTP code.
      }
    }
    const hint =
      e.code === 401
        ? ' (the credentials in the kubeconfig were refused)'
        : e.code === 403
          ? ' (the server needs "create" on tokenreviews.authentication.k8s.io and "get" on pods and nodes)'
          : '';
    return `${message}${hint}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  const cause = e.cause instanceof Error ? e.cause.message : undefined;
  return cause === undefined || cause === message ? message : `${message}: ${cause}`;
}

async function loadKubeConfig(file: string, env: NodeJS.ProcessEnv): Promise<{ lib: ClientLib; kc: KubeConfig; server: string }> {
  const lib = await loadLib();
  const kc = new lib.KubeConfig();
  if (file === '') {
    if (!env['KUBERNETES_SERVICE_HOST'] || !env['KUBERNETES_SERVICE_PORT']) {
      throw internal(
        'unable to create client config: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and ' +
          'KUBERNETES_SERVICE_PORT must be defined (set kube_config_file when the server runs outside the cluster)',
      );
    }
    kc.loadFromCluster();
  } else {
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw internal(`unable to create client config: ${file} (kube_config_file): ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null || cluster.server === '') {
    throw internal(`unable to create client config: ${file === '' ? 'in-cluster configuration' : file} names no current cluster with a server`);
  }
  return { lib, kc, server: cluster.server };
}

function toStatus(review: V1TokenReview): TokenReviewStatus {
  const s = review.status;
  return {
    authenticated: s?.authenticated === true,
    error: s?.error ?? '',
    audiences: s?.audiences ?? [],
    user: {
      username: s?.user?.username ?? '',
      uid: s?.user?.uid ?? '',
      groups: s?.user?.groups ?? [],
      extra: s?.user?.extra ?? {},
    },
  };
}

function toPod(pod: V1Pod): KubePod {
  return {
    uid: pod.metadata?.uid ?? '',
    nodeName: pod.spec?.nodeName ?? '',
    hostIp: pod.status?.hostIP ?? '',
    labels: pod.metadata?.labels ?? {},
  };
}

function toNode(node: V1Node): KubeNode {
  return { uid: node.metadata?.uid ?? '', labels: node.metadata?.labels ?? {} };
}

/** Creates the factory of real clients (kubeconfig file or in-cluster configuration). */
export function createKubeApiClientFactory(opts: KubeApiClientOptions = {}): KubeApiClientFactory {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const env = opts.env ?? process.env;
  return (kubeConfigFile) => {
    let loaded: ReturnType<typeof loadKubeConfig> | undefined;
    // One configuration load per client (that is, per attestation).
    const config = (): ReturnType<typeof loadKubeConfig> => (loaded ??= loadKubeConfig(kubeConfigFile, env));

    async function call<T>(what: string, run: (cfg: Awaited<ReturnType<typeof loadKubeConfig>>, options: { signal: AbortSignal }) => Promise<T>): Promise<T> {
      const cfg = await config();
      try {
        return await run(cfg, { signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        throw internal(`unable to query ${what} API: ${describeKubeError(err, timeoutMs)}`);
      }
    }

    /** An API object whose every request carries the timeout signal. */
    function api<T>(cfg: Awaited<ReturnType<typeof loadKubeConfig>>, ctor: new (c: ReturnType<ClientLib['createConfiguration']>) => T, signal: AbortSignal): T {
      const configuration = cfg.lib.createConfiguration({
        baseServer: new cfg.lib.ServerConfiguration(cfg.server, {}),
        authMethods: { default: cfg.kc },
        promiseMiddleware: [
          {
            pre: async (ctx) => {
              ctx.setSignal(signal);
              return ctx;
            },
            post: async (res) => res,
          },
        ],
      });
      return new ctor(configuration);
    }

    return {
      reviewToken: (token, audiences) =>
        call('token review', async (cfg, { signal }) => {
          const client = api(cfg, cfg.lib.AuthenticationV1Api, signal);
          const review = await client.createTokenReview({
            body: {
              apiVersion: 'authentication.k8s.io/v1',
              kind: 'TokenReview',
              spec: { token, ...(audiences.length > 0 ? { audiences: [...audiences] } : {}) },
            },
          });
          return toStatus(review);
        }),
      getPod: (namespace, name) =>
        call('pods', async (cfg, { signal }) => toPod(await api(cfg, cfg.lib.CoreV1Api, signal).readNamespacedPod({ namespace, name }))),
      getNode: (name) => call('nodes', async (cfg, { signal }) => toNode(await api(cfg, cfg.lib.CoreV1Api, signal).readNode({ name }))),
    };
  };
}
