/**
 * k8s_psat node attestation against a real HTTPS kube-apiserver fake (TokenReview, pods,
 * nodes) reached through a generated kubeconfig, with real signed projected tokens:
 * (a) the server-side attestor in process, through @kubernetes/client-node;
 * (b) end to end with the real server process and the agent's AttestAgent client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError, Code } from '../../src/common/errors.ts';
import { ConfigReader } from '../../src/common/config-reader.ts';
import { parseConfigText, type ConfigTree } from '../../src/common/config-file.ts';
import { parseK8sPsatServerConfig, type K8sPsatServerConfig } from '../../src/server/node-attestors/k8s-psat-config.ts';
import { createK8sPsatAttestor } from '../../src/server/node-attestors/k8s-psat.ts';
import { createKubeApiClientFactory, type KubeApiClient, type TokenReviewStatus } from '../../src/server/node-attestors/kube-api-client.ts';
import type { NodeAttestationResult } from '../../src/server/node-attestors/node-attestor.ts';
import { SUPPORTED_NODE_ATTESTORS } from '../../src/server/config.ts';
import { k8sPsatAttestor } from '../../src/attestors/node/k8s-psat.ts';
import { attestAgent } from '../../src/agent/server-client/attest.ts';
import { connectToServer, type ServerClients } from '../../src/agent/server-client/connection.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';
import { certificatesToPem, decodePemCertificates } from '../../src/common/pem.ts';
import { unaryCall } from '../../src/common/grpc-client.ts';
import { startFakeKubeApiserver, type FakeKubeApiserver } from '../support/fake-kube-apiserver.ts';
import { readBundlePem, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';

const TD = 'example.org';
const NS = 'spire';
const POD = 'spire-agent-x7k2p';
const NODE = 'worker-1';

let api: FakeKubeApiserver;
let dir: string;
let kubeconfig: string;
let nodeUid: string;

async function clusterConfig(extra = '', cluster = 'c1', file = kubeconfig): Promise<K8sPsatServerConfig> {
  const tree = await parseConfigText(
    'server.conf',
    `plugin_data {
      clusters = {
        "${cluster}" = {
          service_account_allow_list = ["spire:spire-agent"]
          kube_config_file = "${file}"
          allowed_node_label_keys = ["topology.kubernetes.io/zone"]
          allowed_pod_label_keys = ["app"]
          ${extra}
        }
      }
    }`,
  );
  return parseK8sPsatServerConfig(new ConfigReader(tree['plugin_data'] as ConfigTree, 'plugin_data'));
}

function payload(token: string, cluster = 'c1'): Buffer {
  return Buffer.from(JSON.stringify({ cluster, token }));
}

const noChallenge = async (): Promise<Buffer> => {
  throw new Error('k8s_psat never sends a challenge');
};

async function attestWith(config: K8sPsatServerConfig, body: Buffer): Promise<NodeAttestationResult> {
  return createK8sPsatAttestor({ trustDomain: TD, config }).attest(body, noChallenge);
}

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

/** Puts the agent pod back in its original state (tests recreate and relabel it). */
function resetAgentPod(): string {
  const pod = api.addPod({ namespace: NS, name: POD, nodeName: NODE, hostIp: '10.0.0.11', serviceAccount: 'spire-agent', labels: { app: 'spire-agent', 'pod-template-hash': 'abc' } });
  return pod.metadata['uid'] as string;
}

beforeAll(async () => {
  api = await startFakeKubeApiserver();
  dir = await mkdtemp(join(tmpdir(), 'psat-it-'));
  kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'));
  nodeUid = api.addNode({ name: NODE, labels: { 'topology.kubernetes.io/zone': 'zone-a', 'node.kubernetes.io/secret': 'no' } }).metadata['uid'] as string;
});

afterAll(async () => {
  await api?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('server-side k8s_psat attestor against the fake apiserver', () => {
  let podUid: string;
  beforeAll(() => {
    podUid = resetAgentPod();
  });

  it('attests a good token: agent ID from the node UID, every selector, re-attestable', async () => {
    const before = api.requests.length;
    const result = await attestWith(await clusterConfig(), payload(await api.tokenForPod(NS, POD)));
    expect(result.agentId).toBe(`spiffe://${TD}/spire/agent/k8s_psat/c1/${nodeUid}`);
    expect(result.canReattest).toBe(true);
    expect(result.selectors.map((s) => `${s.type}:${s.value}`)).toEqual([
      'k8s_psat:cluster:c1',
      'k8s_psat:agent_ns:spire',
      'k8s_psat:agent_sa:spire-agent',
      `k8s_psat:agent_pod_name:${POD}`,
      `k8s_psat:agent_pod_uid:${podUid}`,
      'k8s_psat:agent_node_ip:10.0.0.11',
      `k8s_psat:agent_node_name:${NODE}`,
      `k8s_psat:agent_node_uid:${nodeUid}`,
      'k8s_psat:agent_node_label:topology.kubernetes.io/zone:zone-a',
      'k8s_psat:agent_pod_label:app:spire-agent',
    ]);
    // One TokenReview, then the pod, then the node.
    expect(api.requests.slice(before).map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      'POST /apis/authentication.k8s.io/v1/tokenreviews 201',
      `GET /api/v1/namespaces/${NS}/pods/${POD} 200`,
      `GET /api/v1/nodes/${NODE} 200`,
    ]);
  });

  it('uses the pod UID in the agent ID when use_pod_uid_for_agent_id is set', async () => {
    const result = await attestWith(await clusterConfig('use_pod_uid_for_agent_id = true'), payload(await api.tokenForPod(NS, POD)));
    expect(result.agentId).toBe(`spiffe://${TD}/spire/agent/k8s_psat/c1/pod/${podUid}`);
  });

  it("asks for the apiserver's own audience when audience = []", async () => {
    const config = await clusterConfig('audience = []');
    const own = await api.tokenForPod(NS, POD, { audiences: [api.issuer] });
    expect((await attestWith(config, payload(own))).agentId).toBe(`spiffe://${TD}/spire/agent/k8s_psat/c1/${nodeUid}`);
    const err = await refusal(attestWith(config, payload(await api.tokenForPod(NS, POD))));
    expect(err.message).toContain('is invalid for the target audiences');
  });

  it('refuses a service account that is not in the allow list with PermissionDenied', async () => {
    api.addPod({ namespace: NS, name: 'intruder', nodeName: NODE, serviceAccount: 'default' });
    const err = await refusal(attestWith(await clusterConfig(), payload(await api.tokenForPod(NS, 'intruder'))));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.message).toBe('k8s_psat: "spire:default" is not an allowed service account for cluster "c1"');
  });

  const badTokens: Array<[string, Parameters<FakeKubeApiserver['tokenForPod']>[2], string]> = [
    ['a token for another audience', { audiences: ['vault'] }, 'token audiences ["vault"] is invalid for the target audiences ["spire-server"]'],
    ['an expired token', { issuedAt: Math.floor(Date.now() / 1000) - 8000, expirationSeconds: 7200 }, 'service account token has expired'],
    ['a token signed by an unknown key', { foreignKey: true }, 'error in cryptographic primitive'],
    ['a token from another issuer', { issuer: 'https://evil.example' }, 'invalid bearer token'],
  ];
  for (const [name, opts, reason] of badTokens) {
    it(`refuses ${name}: the TokenReview error is reported, nothing else is asked`, async () => {
      const before = api.requests.length;
      const token = await api.tokenForPod(NS, POD, opts);
      const err = await refusal(attestWith(await clusterConfig(), payload(token)));
      // SPIRE reports a TokenReview status error as Internal, so agents retry with a fresh token.
      expect(err.code).toBe(Code.INTERNAL);
      expect(err.message).toMatch(/^k8s_psat: unable to validate token with TokenReview API for cluster "c1": token review API response contains an error: /);
      expect(err.message).toContain(reason);
      expect(err.message).not.toContain(token);
      expect(api.requests.slice(before).map((r) => r.path)).toEqual(['/apis/authentication.k8s.io/v1/tokenreviews']);
    });
  }

  describe('a recreated pod (same name, new UID)', () => {
    let oldToken: string;
    let oldUid: string;
    beforeAll(async () => {
      oldUid = resetAgentPod();
      oldToken = await api.tokenForPod(NS, POD);
      api.deletePod(NS, POD);
      resetAgentPod();
    });
    afterAll(() => {
      api.validateBoundObjects = true;
      podUid = resetAgentPod();
    });

    it('is refused by the apiserver itself, which invalidates tokens of deleted pods', async () => {
      const err = await refusal(attestWith(await clusterConfig(), payload(oldToken)));
      expect(err.code).toBe(Code.INTERNAL);
      expect(err.message).toContain('service account token has been invalidated');
    });

    it('is refused by the attestor with PermissionDenied when the apiserver still accepts the token', async () => {
      api.validateBoundObjects = false;
      const err = await refusal(attestWith(await clusterConfig(), payload(oldToken)));
      expect(err.code).toBe(Code.PERMISSION_DENIED);
      expect(err.message).toBe(`k8s_psat: pod UID mismatch for pod "${POD}" in cluster "c1": token bound to pod UID "${oldUid}"`);
    });

    it('reports a pod that no longer exists with the apiserver\'s NotFound message', async () => {
      api.validateBoundObjects = false;
      api.deletePod(NS, POD);
      const err = await refusal(attestWith(await clusterConfig(), payload(oldToken)));
      expect(err.code).toBe(Code.INTERNAL);
      expect(err.message).toBe(`k8s_psat: failed to get pod from k8s API server for cluster "c1": unable to query pods API: pods "${POD}" not found`);
    });
  });

  it('refuses an unknown cluster with InvalidArgument, before asking the apiserver', async () => {
    const before = api.requests.length;
    const err = await refusal(attestWith(await clusterConfig(), payload(await api.tokenForPod(NS, POD), 'c9')));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe('k8s_psat: not configured for cluster "c9"');
    expect(api.requests.length).toBe(before);
  });

  it('refuses a node without a UID', async () => {
    api.addNode({ name: 'no-uid', uid: '' });
    api.addPod({ namespace: NS, name: 'on-no-uid', nodeName: 'no-uid', serviceAccount: 'spire-agent' });
    const err = await refusal(attestWith(await clusterConfig(), payload(await api.tokenForPod(NS, 'on-no-uid'))));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toBe('k8s_psat: node UID is empty for cluster "c1"');
  });

  it('names the missing RBAC permission when the apiserver forbids reading pods', async () => {
    api.forbidden.add('pods');
    try {
      const err = await refusal(attestWith(await clusterConfig(), payload(await api.tokenForPod(NS, POD))));
      expect(err.code).toBe(Code.INTERNAL);
      expect(err.message).toBe(
        `k8s_psat: failed to get pod from k8s API server for cluster "c1": unable to query pods API: pods "${POD}" is forbidden: ` +
          `User "system:serviceaccount:spire:spire-server" cannot get resource "pods" in API group "" in the namespace "spire" ` +
          '(the server needs "create" on tokenreviews.authentication.k8s.io and "get" on pods and nodes)',
      );
    } finally {
      api.forbidden.delete('pods');
    }
  });

  it('reports credentials the apiserver refuses', async () => {
    const wrong = await api.writeKubeconfig(join(dir, 'wrong-kubeconfig'), { token: 'not-the-caller-token' });
    const err = await refusal(attestWith(await clusterConfig('', 'c1', wrong), payload(await api.tokenForPod(NS, POD))));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toBe(
      'k8s_psat: unable to validate token with TokenReview API for cluster "c1": unable to query token review API: Unauthorized (the credentials in the kubeconfig were refused)',
    );
  });

  it('reports a kubeconfig file that does not exist', async () => {
    const missing = join(dir, 'missing-kubeconfig');
    const err = await refusal(attestWith(await clusterConfig('', 'c1', missing), payload(await api.tokenForPod(NS, POD))));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toContain(`unable to create client config: ${missing} (kube_config_file): `);
  });

  it('reports a missing in-cluster environment when kube_config_file is empty', async () => {
    const attestor = createK8sPsatAttestor({ trustDomain: TD, config: await clusterConfig('', 'c1', ''), clientFactory: createKubeApiClientFactory({ env: {} }) });
    const err = await refusal(attestor.attest(payload('x.y.z'), noChallenge));
    expect(err.message).toContain('KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined');
  });

  it('times out an apiserver that never answers', async () => {
    const silent: TcpServer = createTcpServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const path = join(dir, 'silent-kubeconfig');
    await writeFile(path, (await readFile(kubeconfig, 'utf8')).replace(/server: .*/, `server: https://127.0.0.1:${port}`));
    try {
      const attestor = createK8sPsatAttestor({ trustDomain: TD, config: await clusterConfig('', 'c1', path), clientFactory: createKubeApiClientFactory({ timeoutMs: 300 }) });
      const err = await refusal(attestor.attest(payload('x.y.z'), noChallenge));
      expect(err.message).toBe('k8s_psat: unable to validate token with TokenReview API for cluster "c1": unable to query token review API: timed out after 300ms');
    } finally {
      silent.close();
    }
  });
});

describe('server-side k8s_psat attestor with an injected client', () => {
  const base: TokenReviewStatus = {
    authenticated: true,
    error: '',
    audiences: ['spire-server'],
    user: {
      username: 'system:serviceaccount:spire:spire-agent',
      uid: 'sa-uid',
      groups: [],
      extra: { 'authentication.kubernetes.io/pod-name': ['p'], 'authentication.kubernetes.io/pod-uid': ['pod-uid'] },
    },
  };
  function fakeClient(status: TokenReviewStatus): KubeApiClient {
    return {
      reviewToken: async () => status,
      getPod: async () => ({ uid: 'pod-uid', nodeName: 'n', hostIp: '', labels: {} }),
      getNode: async () => ({ uid: 'node-uid', labels: {} }),
    };
  }
  const cases: Array<[string, TokenReviewStatus, Code, string]> = [
    ['a token the reviewer does not authenticate', { ...base, authenticated: false }, Code.PERMISSION_DENIED,
      'k8s_psat: token not authenticated according to TokenReview API for cluster "c1"'],
    ['a reviewer that is not audience-aware', { ...base, audiences: [] }, Code.INTERNAL,
      'k8s_psat: unable to validate token with TokenReview API for cluster "c1": token review API did not validate audience: wanted one of ["spire-server"] but got []'],
    ['a username that is not a service account', { ...base, user: { ...base.user, username: 'kubernetes-admin' } }, Code.INTERNAL,
      'k8s_psat: failed to parse username from token review status for cluster "c1": unexpected username format: kubernetes-admin'],
    ['a token not bound to a pod', { ...base, user: { ...base.user, extra: {} } }, Code.INTERNAL,
      'k8s_psat: failed to get pod name from token review status for cluster "c1": missing pod name'],
    ['two pod UIDs', { ...base, user: { ...base.user, extra: { ...base.user.extra, 'authentication.kubernetes.io/pod-uid': ['a', 'b'] } } }, Code.INTERNAL,
      'k8s_psat: failed to get pod UID from token review status for cluster "c1": expected 1 UID but got: 2'],
  ];
  for (const [name, status, code, message] of cases) {
    it(`refuses ${name}`, async () => {
      const attestor = createK8sPsatAttestor({ trustDomain: TD, config: await clusterConfig(), clientFactory: () => fakeClient(status) });
      const err = await refusal(attestor.attest(payload('t'), noChallenge));
      expect(err.code).toBe(code);
      expect(err.message).toBe(message);
    });
  }

  it('emits agent_node_ip even when the pod has no host IP yet, as SPIRE does', async () => {
    const attestor = createK8sPsatAttestor({ trustDomain: TD, config: await clusterConfig(), clientFactory: () => fakeClient(base) });
    const result = await attestor.attest(payload('t'), noChallenge);
    expect(result.agentId).toBe(`spiffe://${TD}/spire/agent/k8s_psat/c1/node-uid`);
    expect(result.selectors).toContainEqual({ type: 'k8s_psat', value: 'agent_node_ip:' });
  });
});

// Runs once the server wires the k8s_psat attestor (src/server/config.ts and server.ts).
const wired = SUPPORTED_NODE_ATTESTORS.includes('k8s_psat');
describe.skipIf(!wired)('end to end: the real server process attests a k8s_psat agent', () => {
  let server: ServerHandle;
  let rootsPem: string;
  let anonymous: ServerClients;
  const opened: ServerClients[] = [];
  let tokenPath: string;
  let podUid: string;

  interface Attested {
    id: string;
    chain: Buffer[];
    key: KeyObject;
    reattestable: boolean;
    clients: ServerClients;
  }

  function mtls(chain: Buffer[], key: KeyObject): ServerClients {
    const clients = connectToServer({
      address: `127.0.0.1:${server.port}`,
      trustDomain: TD,
      rootsPem,
      identity: { certChainPem: certificatesToPem(chain), keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString() },
    });
    opened.push(clients);
    return clients;
  }

  /** Attests as the agent does: the agent-side attestor reads the token file for the payload. */
  async function attest(): Promise<Attested> {
    const attestor = k8sPsatAttestor({ cluster: 'c1', tokenPath });
    const { privateKey, csr } = newKeyAndCsr();
    const result = await attestAgent(anonymous.agent, { type: attestor.type, payload: await attestor.payload(), csr });
    return { id: result.spiffeId, chain: result.certChain, key: privateKey, reattestable: result.reattestable, clients: mtls(result.certChain, privateKey) };
  }

  async function createEntry(...args: string[]): Promise<string> {
    const out = await server.cli('entry', 'create', ...args);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    return /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1] as string;
  }

  beforeAll(async () => {
    podUid = resetAgentPod();
    tokenPath = join(dir, 'spire-agent-token');
    server = await startServerProcess({
      trustDomain: TD,
      plugins: `
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "c1" = {
          service_account_allow_list = ["spire:spire-agent"]
          kube_config_file = "${kubeconfig}"
          allowed_node_label_keys = ["topology.kubernetes.io/zone"]
          allowed_pod_label_keys = ["app"]
        }
      }
    }
  }`,
    });
    rootsPem = await readBundlePem(server);
    anonymous = connectToServer({ address: `127.0.0.1:${server.port}`, trustDomain: TD, rootsPem });
    opened.push(anonymous);
  });

  afterAll(async () => {
    for (const c of opened) c.close();
    await server?.cleanup();
  });

  it('attests, renews only by attesting again, and authorizes node-alias children', async () => {
    const firstToken = await api.tokenForPod(NS, POD);
    await writeFile(tokenPath, firstToken);
    const agent = await attest();
    expect(agent.id).toBe(`spiffe://${TD}/spire/agent/k8s_psat/c1/${nodeUid}`);
    expect(agent.reattestable).toBe(true);
    expect(checkX509SvidProfile(agent.chain, { expectedId: agent.id, bundleRootsDer: decodePemCertificates(rootsPem) })).toEqual([]);

    const shown = await server.cli('agent', 'show', '-spiffeID', agent.id);
    expect(shown.stdout).toContain('Attestation type  : k8s_psat');
    expect(shown.stdout).toContain('Can re-attest     : true');
    for (const s of ['cluster:c1', 'agent_ns:spire', 'agent_sa:spire-agent', `agent_pod_uid:${podUid}`, `agent_node_uid:${nodeUid}`, 'agent_node_label:topology.kubernetes.io/zone:zone-a', 'agent_pod_label:app:spire-agent']) {
      expect(shown.stdout).toContain(`Selectors         : k8s_psat:${s}`);
    }

    // A re-attestable agent may not renew.
    const renewal = await unaryCall(agent.clients.agent, 'RenewAgent', { params: { csr: newKeyAndCsr().csr } }).catch((e: unknown) => e);
    expect(renewal).toBeInstanceOf(ApiError);
    expect((renewal as ApiError).code).toBe(Code.PERMISSION_DENIED);
    expect((renewal as ApiError).details).toEqual({ reason: 'AGENT_MUST_REATTEST' });

    // The kubelet rotated the token: the agent re-reads it and attests again.
    await writeFile(tokenPath, await api.tokenForPod(NS, POD));
    const again = await attest();
    expect(again.id).toBe(agent.id);
    const oldSerial = new X509Certificate(agent.chain[0] as Buffer).serialNumber;
    expect(new X509Certificate(again.chain[0] as Buffer).serialNumber).not.toBe(oldSerial);
    await unaryCall(again.clients.entry, 'GetAuthorizedEntries', {});
    const stale = await unaryCall(agent.clients.entry, 'GetAuthorizedEntries', {}).catch((e: unknown) => e);
    expect((stale as ApiError).code).toBe(Code.PERMISSION_DENIED);
    expect((stale as ApiError).details).toEqual({ reason: 'AGENT_NOT_ACTIVE' });

    // One node-alias entry covers every node of the cluster.
    await createEntry('-node', '-spiffeID', `spiffe://${TD}/cluster/c1`, '-selector', 'k8s_psat:cluster:c1');
    const child = await createEntry('-spiffeID', `spiffe://${TD}/ns/demo/sa/demo`, '-parentID', `spiffe://${TD}/cluster/c1`, '-selector', 'k8s:ns:demo', '-selector', 'k8s:sa:demo');
    await createEntry('-node', '-spiffeID', `spiffe://${TD}/cluster/c2`, '-selector', 'k8s_psat:cluster:c2');
    await createEntry('-spiffeID', `spiffe://${TD}/elsewhere`, '-parentID', `spiffe://${TD}/cluster/c2`, '-selector', 'k8s:ns:demo');
    const zoned = await createEntry('-node', '-spiffeID', `spiffe://${TD}/zone-a`, '-selector', 'k8s_psat:cluster:c1', '-selector', 'k8s_psat:agent_node_label:topology.kubernetes.io/zone:zone-a');
    const zoneChild = await createEntry('-spiffeID', `spiffe://${TD}/zone-a/app`, '-parentID', `spiffe://${TD}/zone-a`, '-selector', 'k8s:ns:zone');
    expect(zoned).not.toBe('');
    const authorized = await unaryCall(again.clients.entry, 'GetAuthorizedEntries', {});
    expect(authorized.entries.map((e) => e.id).sort()).toEqual([child, zoneChild].sort());

    // The token never reaches the server's logs.
    expect(server.logs()).not.toContain(firstToken);
  });

  it('refuses a service account outside the allow list over the wire with PermissionDenied', async () => {
    api.addPod({ namespace: NS, name: 'intruder-e2e', nodeName: NODE, serviceAccount: 'default' });
    await writeFile(tokenPath, await api.tokenForPod(NS, 'intruder-e2e'));
    const err = await refusal(attest());
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.message).toContain('"spire:default" is not an allowed service account for cluster "c1"');
  });
});
