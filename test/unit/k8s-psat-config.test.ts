/**
 * k8s_psat configuration (agent and server plugin_data, HCL and the helm chart's JSON), the
 * agent-side payload, and the server's pure payload/username parsing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText, type ConfigTree } from '../../src/common/config-file.ts';
import { ConfigReader } from '../../src/common/config-reader.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { K8S_PSAT_DEFAULT_TOKEN_PATH, k8sPsatAttestor, parseK8sPsatAgentConfig } from '../../src/attestors/node/k8s-psat.ts';
import { parseK8sPsatServerConfig } from '../../src/server/node-attestors/k8s-psat-config.ts';
import { parsePsatPayload, serviceAccountFromUsername } from '../../src/server/node-attestors/k8s-psat.ts';

const SERVER_PATH = 'plugins.NodeAttestor.k8s_psat.plugin_data';
const AGENT_PATH = 'plugins.NodeAttestor.k8s_psat.plugin_data';

async function pluginData(body: string, name = 'x.conf'): Promise<ConfigTree> {
  const text = name.endsWith('.json') ? body : `plugin_data {\n${body}\n}`;
  const tree = await parseConfigText(name, text);
  return (name.endsWith('.json') ? tree : tree['plugin_data']) as ConfigTree;
}

function errorOf(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError');
}

describe('parseK8sPsatServerConfig', () => {
  it("reads SPIRE's clusters map with every field", async () => {
    const tree = await pluginData(`
      clusters = {
        "c1" = {
          service_account_allow_list = ["spire:spire-agent", "other:agent"]
          audience = ["spire-server", "extra"]
          kube_config_file = "kube/config"
          allowed_node_label_keys = ["topology.kubernetes.io/zone"]
          allowed_pod_label_keys = ["app"]
          use_pod_uid_for_agent_id = true
        }
        "c2" = { service_account_allow_list = ["spire:spire-agent"] }
      }`);
    const config = parseK8sPsatServerConfig(new ConfigReader(tree, SERVER_PATH), '/etc/spire');
    expect([...config.clusters.keys()]).toEqual(['c1', 'c2']);
    expect(config.clusters.get('c1')).toEqual({
      name: 'c1',
      serviceAccountAllowList: new Set(['spire:spire-agent', 'other:agent']),
      audience: ['spire-server', 'extra'],
      kubeConfigFile: '/etc/spire/kube/config',
      allowedNodeLabelKeys: new Set(['topology.kubernetes.io/zone']),
      allowedPodLabelKeys: new Set(['app']),
      usePodUidForAgentId: true,
    });
    expect(config.clusters.get('c2')).toEqual({
      name: 'c2',
      serviceAccountAllowList: new Set(['spire:spire-agent']),
      audience: ['spire-server'],
      kubeConfigFile: '',
      allowedNodeLabelKeys: new Set(),
      allowedPodLabelKeys: new Set(),
      usePodUidForAgentId: false,
    });
  });

  it('reads the same config from the helm chart JSON (clusters as a list of one-key objects)', async () => {
    const json = JSON.stringify({ clusters: [{ c1: { service_account_allow_list: ['spire:spire-agent'], kube_config_file: '' } }, { c2: { service_account_allow_list: ['a:b'] } }] });
    const config = parseK8sPsatServerConfig(new ConfigReader(await pluginData(json, 'server.json'), SERVER_PATH));
    expect([...config.clusters.keys()]).toEqual(['c1', 'c2']);
    expect(config.clusters.get('c1')?.kubeConfigFile).toBe('');
  });

  it('keeps an explicit empty audience (the apiserver audience) apart from the default', async () => {
    const tree = await pluginData(`clusters = { "c1" = { service_account_allow_list = ["a:b"], audience = [] } }`);
    expect(parseK8sPsatServerConfig(new ConfigReader(tree, SERVER_PATH)).clusters.get('c1')?.audience).toEqual([]);
  });

  it('accepts no clusters (attestation is then disabled, as in SPIRE)', async () => {
    expect(parseK8sPsatServerConfig(new ConfigReader(await pluginData(''), SERVER_PATH)).clusters.size).toBe(0);
  });

  const bad: Array<[string, string, string]> = [
    ['a cluster without service accounts', `clusters = { "c1" = { kube_config_file = "" } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allow_list: cluster "c1" configuration must have at least one service account allowed (for example ["spire:spire-agent"])`],
    ['an empty allow list', `clusters = { "c1" = { service_account_allow_list = [] } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allow_list: cluster "c1" configuration must have at least one service account allowed (for example ["spire:spire-agent"])`],
    ['an allow-list entry without a namespace', `clusters = { "c1" = { service_account_allow_list = ["spire-agent"] } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allow_list: "spire-agent" must be "<namespace>:<service account>" (for example "spire:spire-agent")`],
    ['an allow-list entry with an empty part', `clusters = { "c1" = { service_account_allow_list = ["spire:"] } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allow_list: "spire:" must be "<namespace>:<service account>" (for example "spire:spire-agent")`],
    ['a misspelt cluster key', `clusters = { "c1" = { service_account_allowlist = ["a:b"] } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allowlist: unknown key (did you mean "service_account_allow_list"?)`],
    ['a misspelt top-level key', `cluster = { "c1" = { service_account_allow_list = ["a:b"] } }`,
      `config: ${SERVER_PATH}.cluster: unknown key (did you mean "clusters"?)`],
    ['a cluster name that cannot be a path segment', `clusters = { "my/cluster" = { service_account_allow_list = ["a:b"] } }`,
      `config: ${SERVER_PATH}.clusters.my/cluster: the cluster name must be usable as a SPIFFE ID path segment (letters, digits, ".", "-", "_")`],
    ['a non-list allow list', `clusters = { "c1" = { service_account_allow_list = 3 } }`,
      `config: ${SERVER_PATH}.clusters.c1.service_account_allow_list: must be a list of strings (got 3)`],
    ['a non-boolean use_pod_uid_for_agent_id', `clusters = { "c1" = { service_account_allow_list = ["a:b"], use_pod_uid_for_agent_id = "yes" } }`,
      `config: ${SERVER_PATH}.clusters.c1.use_pod_uid_for_agent_id: must be true or false (got "yes")`],
  ];
  for (const [name, body, message] of bad) {
    it(`refuses ${name}, naming the field`, async () => {
      const tree = await pluginData(body);
      const err = errorOf(() => parseK8sPsatServerConfig(new ConfigReader(tree, SERVER_PATH)));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toBe(message);
    });
  }
});

describe('parseK8sPsatAgentConfig', () => {
  const cases: Array<[string, string, { cluster: string; tokenPath: string } | string]> = [
    ['cluster only: the default token path', 'cluster = "c1"', { cluster: 'c1', tokenPath: K8S_PSAT_DEFAULT_TOKEN_PATH }],
    ['an empty token_path means the default', 'cluster = "c1"\ntoken_path = ""', { cluster: 'c1', tokenPath: K8S_PSAT_DEFAULT_TOKEN_PATH }],
    ['an absolute token_path', 'cluster = "c1"\ntoken_path = "/run/tokens/psat"', { cluster: 'c1', tokenPath: '/run/tokens/psat' }],
    ['a relative token_path resolves against cwd', 'cluster = "c1"\ntoken_path = "tokens/psat"', { cluster: 'c1', tokenPath: '/opt/agent/tokens/psat' }],
    ['no cluster', 'token_path = "/t"', `config: ${AGENT_PATH}.cluster: is required: the cluster name configured in the server's k8s_psat "clusters" block`],
    ['an empty cluster', 'cluster = ""', `config: ${AGENT_PATH}.cluster: is required: the cluster name configured in the server's k8s_psat "clusters" block`],
    ['a misspelt key', 'cluster = "c1"\ntokenpath = "/t"', `config: ${AGENT_PATH}.tokenpath: unknown key (did you mean "token_path"?)`],
    ['a non-string cluster', 'cluster = ["c1"]', `config: ${AGENT_PATH}.cluster: must be a string (got ["c1"])`],
  ];
  for (const [name, body, expected] of cases) {
    it(name, async () => {
      const reader = new ConfigReader(await pluginData(body), AGENT_PATH);
      if (typeof expected === 'string') expect(errorOf(() => parseK8sPsatAgentConfig(reader, '/opt/agent')).message).toBe(expected);
      else expect(parseK8sPsatAgentConfig(reader, '/opt/agent')).toEqual(expected);
    });
  }
});

describe('k8sPsatAttestor (agent side)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psat-agent-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is the re-attestable k8s_psat type', () => {
    const attestor = k8sPsatAttestor({ cluster: 'c1', tokenPath: join(dir, 'none') });
    expect(attestor.type).toBe('k8s_psat');
    expect(attestor.reattestable).toBe(true);
  });

  it('sends {"cluster","token"} with the raw, untrimmed file content, re-read on every call', async () => {
    const path = join(dir, 'token');
    const attestor = k8sPsatAttestor({ cluster: 'c1', tokenPath: path });
    await writeFile(path, 'first.jwt\n');
    expect(JSON.parse((await attestor.payload()).toString())).toEqual({ cluster: 'c1', token: 'first.jwt\n' });
    await writeFile(path, 'second.jwt');
    expect(JSON.parse((await attestor.payload()).toString())).toEqual({ cluster: 'c1', token: 'second.jwt' });
  });

  it('refuses an empty token file, naming the path', async () => {
    const path = join(dir, 'empty');
    await writeFile(path, '');
    const err = await k8sPsatAttestor({ cluster: 'c1', tokenPath: path }).payload().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as ApiError).message).toBe(`k8s_psat: unable to load token from ${path} (token_path): "${path}" is empty (has the kubelet written the projected token yet?)`);
  });

  it('refuses a missing token file, naming the path and the projected volume to mount', async () => {
    const path = join(dir, 'tokens', 'spire-agent');
    const err = (await k8sPsatAttestor({ cluster: 'c1', tokenPath: path }).payload().catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe(
      `k8s_psat: unable to load token from ${path} (token_path): the file does not exist; mount a projected service-account token there: ` +
        `a projected volume with serviceAccountToken { path: "spire-agent", audience: "spire-server", expirationSeconds: 7200 } mounted at "${join(dir, 'tokens')}"`,
    );
  });

  it('refuses a token_path that is a directory, naming the setting', async () => {
    const err = (await k8sPsatAttestor({ cluster: 'c1', tokenPath: dir }).payload().catch((e: unknown) => e)) as ApiError;
    expect(err.message).toBe(`k8s_psat: unable to load token from ${dir} (token_path): "${dir}" is a directory, not a file`);
  });

  it('refuses an empty cluster name', () => {
    expect(errorOf(() => k8sPsatAttestor({ cluster: '' })).message).toBe('k8s_psat: the cluster name is empty');
  });
});

describe('server-side payload and username parsing', () => {
  const payloads: Array<[string, string, string]> = [
    ['an empty payload', '', 'k8s_psat: missing attestation payload'],
    ['bad JSON', '{"cluster":', 'k8s_psat: failed to unmarshal data payload: '],
    ['a JSON array', '[]', 'k8s_psat: failed to unmarshal data payload: expected a JSON object'],
    ['a non-string token', '{"cluster":"c1","token":5}', 'k8s_psat: failed to unmarshal data payload: "cluster" and "token" must be strings'],
    ['no cluster', '{"token":"t"}', 'k8s_psat: missing cluster in attestation data'],
    ['an empty token', '{"cluster":"c1","token":""}', 'k8s_psat: missing token in attestation data'],
  ];
  for (const [name, payload, message] of payloads) {
    it(`refuses ${name} with InvalidArgument`, () => {
      const err = errorOf(() => parsePsatPayload(Buffer.from(payload)));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message.startsWith(message)).toBe(true);
    });
  }

  it('reads cluster and token', () => {
    expect(parsePsatPayload(Buffer.from('{"cluster":"c1","token":"a.b.c"}'))).toEqual({ cluster: 'c1', token: 'a.b.c' });
  });

  const usernames: Array<[string, [string, string] | string]> = [
    ['system:serviceaccount:spire:spire-agent', ['spire', 'spire-agent']],
    ['', 'empty username'],
    ['system:serviceaccount:spire', 'unexpected username format: system:serviceaccount:spire'],
    ['system:serviceaccount::agent', 'missing namespace'],
    ['system:serviceaccount:spire:', 'missing service account name'],
  ];
  for (const [username, expected] of usernames) {
    it(`parses username "${username}"`, () => {
      if (typeof expected === 'string') expect(() => serviceAccountFromUsername(username)).toThrow(expected);
      else expect(serviceAccountFromUsername(username)).toEqual(expected);
    });
  }
});
