/**
 * k8s_psat node attestation, agent side: the payload is `{"cluster":…,"token":…}` with the
 * node's projected service-account token, read fresh from disk on every attestation (the
 * kubelet rotates it). The server validates the token with a TokenReview; the agent rotates
 * its SVID by attesting again, never with RenewAgent.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { ApiError, Code } from '../../common/errors.ts';
import { PathError, toPathError } from '../../common/path-errors.ts';
import type { ConfigReader } from '../../common/config-reader.ts';
import type { NodeAttestor } from './node-attestor.ts';

/** Where SPIRE (and the SPIRE helm chart) mount the agent's projected token. */
export const K8S_PSAT_DEFAULT_TOKEN_PATH = '/var/run/secrets/tokens/spire-agent';

/** Options of the agent-side k8s_psat attestor (`plugin_data { cluster, token_path }`). */
export interface K8sPsatAgentOptions {
  /** The cluster name the server's `clusters` block knows this cluster by. */
  cluster: string;
  /** The projected service-account token file. */
  tokenPath?: string;
}

/** The parsed agent-side `NodeAttestor "k8s_psat"` plugin_data. */
export interface K8sPsatAgentConfig {
  cluster: string;
  tokenPath: string;
}

/**
 * Parses the agent's `NodeAttestor "k8s_psat" { plugin_data { cluster, token_path } }`.
 * `cluster` is required; an empty or absent `token_path` means the default, as in SPIRE.
 * Relative paths resolve against `cwd`.
 */
export function parseK8sPsatAgentConfig(pluginData: ConfigReader, cwd = process.cwd()): K8sPsatAgentConfig {
  const cluster = pluginData.string('cluster', '');
  if (cluster === '') pluginData.fail('cluster', 'is required: the cluster name configured in the server\'s k8s_psat "clusters" block');
  const tokenPath = pluginData.string('token_path', '');
  pluginData.done();
  return { cluster, tokenPath: tokenPath === '' ? K8S_PSAT_DEFAULT_TOKEN_PATH : resolve(cwd, tokenPath) };
}

function missingTokenHint(path: string): string {
  return (
    `mount a projected service-account token there: a projected volume with ` +
    `serviceAccountToken { path: "${basename(path)}", audience: "spire-server", expirationSeconds: 7200 } ` +
    `mounted at "${dirname(path)}"`
  );
}

/** Reads the token file exactly as SPIRE does: raw content, not trimmed, non-empty. */
async function loadToken(path: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ApiError(Code.INVALID_ARGUMENT, `k8s_psat: unable to load token from ${path} (token_path): the file does not exist; ${missingTokenHint(path)}`);
    }
    const described = await toPathError(err, path, 'read');
    const detail = described instanceof PathError ? described.detail : err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INVALID_ARGUMENT, `k8s_psat: unable to load token from ${path} (token_path): ${detail}`);
  }
  if (data.length === 0) {
    throw new ApiError(Code.INVALID_ARGUMENT, `k8s_psat: unable to load token from ${path} (token_path): "${path}" is empty (has the kubelet written the projected token yet?)`);
  }
  return data.toString('utf8');
}

/** Creates the agent-side k8s_psat attestor. */
export function k8sPsatAttestor(opts: K8sPsatAgentOptions): NodeAttestor {
  const cluster = opts.cluster;
  const tokenPath = opts.tokenPath ?? K8S_PSAT_DEFAULT_TOKEN_PATH;
  if (cluster === '') throw new ApiError(Code.INVALID_ARGUMENT, 'k8s_psat: the cluster name is empty');
  return {
    type: 'k8s_psat',
    reattestable: true,
    // Read on every call: the kubelet replaces the projected token well before it expires.
    payload: async () => Buffer.from(JSON.stringify({ cluster, token: await loadToken(tokenPath) }), 'utf8'),
  };
}
