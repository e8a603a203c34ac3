import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createK8sAttestor, type K8sAttestorOptions, type K8sWorkloadAttestor } from '../../src/attestors/workload/k8s/k8s.ts';
import type { K8sAttestorMetrics, KubeletOutcome } from '../../src/attestors/workload/k8s/metrics.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { createLogger } from '../../src/common/logger.ts';
import { generateCa, podJson, startFakeKubelet, type FakeKubelet } from '../support/fake-kubelet.ts';
import { failure } from '../support/api-failure.ts';

const POD_UID = '5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10';
const OTHER_POD_UID = '7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910';
const CID = '3'.repeat(64);
const SIDECAR_CID = '2'.repeat(64);
const OTHER_CID = '7'.repeat(64);
const NGINX_ID = 'docker.io/library/nginx@sha256:' + 'ab'.repeat(32);
/** A token that looks like a service-account JWT, so error messages can show its subject. */
const TOKEN = [
  Buffer.from('{"alg":"RS256","kid":"k1"}').toString('base64url'),
  Buffer.from(JSON.stringify({ sub: 'system:serviceaccount:spire:spire-agent', aud: ['https://kubernetes.default.svc'] })).toString('base64url'),
  'c2lnbmF0dXJl',
].join('.');

const PID_WEB = 101;
const PID_HOST = 102;
const PID_NAMESPACED = 103;
const PID_MISSING_POD = 104;
const PID_SIDECAR = 105;
const PID_MOUNTINFO = 106;
const PID_EPHEMERAL = 107;
const PID_LATE = 108;
const LATE_CID = '4'.repeat(64);

let root: string;
let procRoot: string;
let caPath: string;
let tokenPath: string;
let kubelet: FakeKubelet;
const attestors: K8sWorkloadAttestor[] = [];
let logs: Array<Record<string, unknown>>;

const systemdPath = (podUid: string, cid: string): string =>
  `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${podUid.replaceAll('-', '_')}.slice/cri-containerd-${cid}.scope`;

async function fakeProcess(pid: number, cgroup: string, mountinfo?: string): Promise<void> {
  const dir = join(procRoot, String(pid));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cgroup'), cgroup);
  if (mountinfo !== undefined) await writeFile(join(dir, 'mountinfo'), mountinfo);
}

/** The web pod; `started: false` lists its app container without a container ID yet. */
function webPod(started = true): unknown {
  const webContainerId = started ? `containerd://${CID}` : undefined;
  return podJson({
    uid: POD_UID,
    name: 'web-7d4b9c8f6-x2x7q',
    namespace: 'demo',
    serviceAccountName: 'web',
    labels: { app: 'web' },
    owners: [{ kind: 'ReplicaSet', name: 'web-7d4b9c8f6', uid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0' }],
    containers: [
      { name: 'istio-proxy', image: 'proxyv2:1.24.0', imageID: 'proxyv2@sha256:' + 'cd'.repeat(32), containerID: `containerd://${SIDECAR_CID}` },
      { name: 'web', image: 'nginx:1.27', imageID: webContainerId ? NGINX_ID : '', containerID: webContainerId },
    ],
  });
}

const WEB_POD_SELECTORS = [
  'sa:web',
  'ns:demo',
  'node-name:node-a',
  `pod-uid:${POD_UID}`,
  'pod-name:web-7d4b9c8f6-x2x7q',
  'pod-image-count:2',
  'pod-init-image-count:0',
  'pod-image:proxyv2:1.24.0',
  'pod-image:proxyv2@sha256:' + 'cd'.repeat(32),
  'pod-image:nginx:1.27',
  `pod-image:${NGINX_ID}`,
  'pod-label:app:web',
  'pod-owner:ReplicaSet:web-7d4b9c8f6',
  'pod-owner-uid:ReplicaSet:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
];
const WEB_CONTAINER_SELECTORS = ['container-name:web', 'container-image:nginx:1.27', `container-image:${NGINX_ID}`];

function attestor(overrides: Partial<K8sAttestorOptions> = {}, target: FakeKubelet = kubelet): K8sWorkloadAttestor {
  const destination = new PassThrough();
  destination.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  const a = createK8sAttestor({
    logger: createLogger({ name: 'test', level: 'debug', destination }),
    procRoot,
    kubeletCaPath: caPath,
    tokenPath,
    nodeName: target.nodeName,
    baseUrl: target.baseUrl,
    pollRetryIntervalMs: 20,
    maxPollAttempts: 5,
    env: {},
    ...overrides,
  });
  attestors.push(a);
  return a;
}


const live = (): AbortSignal => new AbortController().signal;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'k8s-attestor-'));
  procRoot = join(root, 'proc');
  caPath = join(root, 'kubelet-ca.crt');
  tokenPath = join(root, 'token');
  kubelet = await startFakeKubelet({ nodeName: 'node-a' });
  await writeFile(caPath, kubelet.caPem);
  await fakeProcess(PID_WEB, `12:pids:${systemdPath(POD_UID, CID)}\n2:rdma:/\n0::${systemdPath(POD_UID, CID)}\n`);
  await fakeProcess(PID_SIDECAR, `0::${systemdPath(POD_UID, SIDECAR_CID)}\n`);
  await fakeProcess(PID_HOST, '0::/user.slice/user-1000.slice/session-3.scope\n');
  await fakeProcess(PID_NAMESPACED, `0::/../crio-${OTHER_CID}.scope\n`);
  await fakeProcess(PID_MISSING_POD, `0::${systemdPath('00000000-1111-2222-3333-444444444444', '9'.repeat(64))}\n`);
  // The cgroup file names nothing (agent outside the host cgroup namespace): mountinfo decides.
  await fakeProcess(
    PID_MOUNTINFO,
    '0::/\n',
    `1501 1500 0:26 /kubepods/burstable/pod${POD_UID}/${CID} /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n`,
  );
  await fakeProcess(PID_EPHEMERAL, `0::/../crio-${'8'.repeat(64)}.scope\n`);
  await fakeProcess(PID_LATE, `0::${systemdPath(POD_UID, LATE_CID)}\n`);
});

afterAll(async () => {
  await kubelet.close();
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  logs = [];
  kubelet.pods.clear();
  kubelet.pods.set(POD_UID, webPod());
  kubelet.pods.set(
    OTHER_POD_UID,
    podJson({
      uid: OTHER_POD_UID,
      name: 'api-0',
      namespace: 'payments',
      serviceAccountName: 'api',
      containers: [{ name: 'api', image: 'quay.io/example/api:v3', imageID: 'quay.io/example/api@sha256:' + '88'.repeat(32), containerID: `cri-o://${OTHER_CID}` }],
      ephemeralContainers: [{ name: 'debugger', image: 'busybox', imageID: 'busybox@sha256:' + '99'.repeat(32), containerID: `cri-o://${'8'.repeat(64)}` }],
    }),
  );
  kubelet.allowedTokens.clear();
  kubelet.allowedTokens.add(TOKEN);
  kubelet.delayMs = 0;
  kubelet.onRequest = undefined;
  await writeFile(tokenPath, `${TOKEN}\n`);
  await writeFile(caPath, kubelet.caPem);
});

afterEach(async () => {
  await Promise.all(attestors.splice(0).map((a) => a.close()));
});

describe('k8s attestor against a fake kubelet', () => {
  it('attests a container: pod and container selectors, over verified TLS with the trimmed token', async () => {
    const values = await attestor().attest(PID_WEB, live());
    expect(values).toEqual([...WEB_POD_SELECTORS, ...WEB_CONTAINER_SELECTORS]);
    expect(kubelet.lastAuthorization).toBe(`Bearer ${TOKEN}`);
  });

  it('a process outside any container gets no selectors, no error, and no kubelet request', async () => {
    const before = kubelet.requests;
    await expect(attestor().attest(PID_HOST, live())).resolves.toEqual([]);
    expect(kubelet.requests).toBe(before);
  });

  it('a process that no longer exists gets no selectors (as in SPIRE)', async () => {
    await expect(attestor().attest(999_999, live())).resolves.toEqual([]);
  });

  it('without a pod UID in the cgroup path (CRI-O, cgroup namespace) every pod is searched', async () => {
    const values = await attestor().attest(PID_NAMESPACED, live());
    expect(values).toContain('ns:payments');
    expect(values).toContain('container-name:api');
  });

  it('falls back to mountinfo only when the cgroup file names no container', async () => {
    const values = await attestor().attest(PID_MOUNTINFO, live());
    expect(values).toEqual([...WEB_POD_SELECTORS, ...WEB_CONTAINER_SELECTORS]);
  });

  it('the cgroup file wins over a spoofed mountinfo', async () => {
    await fakeProcess(
      200,
      `0::${systemdPath(POD_UID, SIDECAR_CID)}\n`,
      `1 0 0:26 /kubepods/pod${OTHER_POD_UID}/${OTHER_CID} /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n`,
    );
    const values = await attestor().attest(200, live());
    expect(values).toContain('container-name:istio-proxy');
    expect(values).not.toContain('ns:payments');
  });

  it('waits for a container that appears in the pod status after a few polls', async () => {
    kubelet.pods.set(POD_UID, webPod(false));
    const start = kubelet.requests;
    kubelet.onRequest = (n) => {
      if (n - start >= 3) kubelet.pods.set(POD_UID, webPod());
    };
    const values = await attestor({ maxPollAttempts: 50 }).attest(PID_WEB, live());
    expect(values).toEqual([...WEB_POD_SELECTORS, ...WEB_CONTAINER_SELECTORS]);
    expect(kubelet.requests - start).toBe(3);
  });

  it('pod known but its container never listed: pod-level selectors after the bounded wait, logged at info', async () => {
    kubelet.pods.set(POD_UID, webPod(false));
    const start = kubelet.requests;
    const started = Date.now();
    const values = await attestor({ maxPollAttempts: 4 }).attest(PID_WEB, live());
    expect(values).toEqual(WEB_POD_SELECTORS.map((v) => (v === `pod-image:${NGINX_ID}` ? 'pod-image:' : v)));
    const line = logs.find((l) => String(l['msg']).includes('pod-level selectors only'));
    expect(line).toMatchObject({ level: 'info', caller_pid: PID_WEB, pod_uid: POD_UID, container_id: CID });
    // At most 4 attempts within about 4 × 20 ms (fewer only when fetches are slower than the interval).
    const attempts = line?.['attempts'] as number;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(4);
    expect(kubelet.requests - start).toBe(attempts);
    expect(Date.now() - started).toBeGreaterThanOrEqual((attempts - 1) * 20 - 5);
  });

  it('disable_container_selectors: pod-level selectors at once, with or without the container', async () => {
    await expect(attestor({ disableContainerSelectors: true }).attest(PID_WEB, live())).resolves.toEqual(WEB_POD_SELECTORS);
    kubelet.pods.set(POD_UID, webPod(false));
    const start = kubelet.requests;
    const values = await attestor({ disableContainerSelectors: true }).attest(PID_WEB, live());
    expect(values).toContain('pod-name:web-7d4b9c8f6-x2x7q');
    expect(kubelet.requests - start).toBe(1);
  });

  it('unknown pod: Unavailable naming the pod UID, the container ID and how long it waited', async () => {
    const err = await failure(attestor({ maxPollAttempts: 3, pollRetryIntervalMs: 50 }).attest(PID_MISSING_POD, live()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toMatch(
      new RegExp(`^k8s: pod 00000000-1111-2222-3333-444444444444 \\(of container ${'9'.repeat(64)}\\) is not in the kubelet pod list after [23] attempts over \\d+\\.\\ds$`),
    );
  });

  it('unknown container without a pod UID: Unavailable saying every pod was searched', async () => {
    kubelet.pods.delete(OTHER_POD_UID);
    const err = await failure(attestor({ maxPollAttempts: 2 }).attest(PID_NAMESPACED, live()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain(`container ${OTHER_CID} (the cgroup path names no pod UID, so every pod was searched) is not in the kubelet pod list after`);
  });

  it('a container given up on after the bounded wait is not polled for again', async () => {
    kubelet.pods.delete(OTHER_POD_UID);
    const a = attestor({ maxPollAttempts: 3 });
    const start = kubelet.requests;
    await failure(a.attest(PID_NAMESPACED, live()));
    expect(kubelet.requests - start).toBe(3);
    const again = await failure(a.attest(PID_NAMESPACED, live()));
    expect(again.code).toBe(Code.UNAVAILABLE);
    expect(again.message).toContain('not polled for again');
    expect(kubelet.requests - start).toBe(3);
  });

  it('a container in a terminal pod is not found (terminal pods are dropped)', async () => {
    kubelet.pods.set(OTHER_POD_UID, { ...(kubelet.pods.get(OTHER_POD_UID) as object), status: { phase: 'Succeeded' } });
    const err = await failure(attestor({ maxPollAttempts: 2 }).attest(PID_NAMESPACED, live()));
    expect(err.code).toBe(Code.UNAVAILABLE);
  });

  it('an ephemeral container is refused at once', async () => {
    const start = kubelet.requests;
    const err = await failure(attestor().attest(PID_EPHEMERAL, live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('is an ephemeral container of pod payments/api-0');
    expect(kubelet.requests - start).toBe(1);
  });

  it('two pods listing the same container: Internal', async () => {
    kubelet.pods.set(
      'dup',
      podJson({ uid: 'dup', name: 'dup', namespace: 'x', containers: [{ name: 'c', image: 'i', containerID: `containerd://${OTHER_CID}` }] }),
    );
    const err = await failure(attestor().attest(PID_NAMESPACED, live()));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toBe(`k8s: two pods found with same container Id (${OTHER_CID})`);
  });

  it('50 concurrent attestations share exactly one kubelet request and one index', async () => {
    kubelet.delayMs = 100;
    const a = attestor();
    const start = kubelet.requests;
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => a.attest(i % 2 === 0 ? PID_WEB : PID_SIDECAR, live())),
    );
    expect(kubelet.requests - start).toBe(1);
    expect(kubelet.maxInFlight).toBe(1);
    expect(results[0]).toEqual([...WEB_POD_SELECTORS, ...WEB_CONTAINER_SELECTORS]);
    expect(results[1]).toContain('container-name:istio-proxy');
  });

  it('picks up a rotated token file', async () => {
    const a = attestor({ podListMaxAgeMs: 20 });
    await a.attest(PID_WEB, live());
    const rotated = TOKEN.replace('c2lnbmF0dXJl', 'bmV3LXNpZ25hdHVyZQ');
    kubelet.allowedTokens.clear();
    kubelet.allowedTokens.add(rotated);
    // Atomic replace, as the kubelet's projected-volume writer does.
    await writeFile(`${tokenPath}.new`, rotated);
    await rename(`${tokenPath}.new`, tokenPath);
    await new Promise((r) => setTimeout(r, 30)); // past the snapshot's freshness
    await expect(a.attest(PID_WEB, live())).resolves.toContain('container-name:web');
    expect(kubelet.lastAuthorization).toBe(`Bearer ${rotated}`);
  });

  it('a kubelet that does not answer in time: Unavailable naming the timeout, retried within the bound', async () => {
    kubelet.delayMs = 300;
    const start = kubelet.requests;
    const err = await failure(attestor({ kubeletTimeoutMs: 50, maxPollAttempts: 2, pollRetryIntervalMs: 150 }).attest(PID_WEB, live()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toMatch(/^k8s: no pod list from the kubelet for container 3{64} of pod [-0-9a-f]+ after 2 attempts over \d+\.\ds: kubelet: GET https:\/\/127\.0\.0\.1:\d+\/pods timed out after 0\.05s$/);
    expect(kubelet.requests - start).toBe(2);
  });

  it('honours the abort signal while waiting', async () => {
    kubelet.pods.set(POD_UID, webPod(false));
    const controller = new AbortController();
    const pending = attestor({ maxPollAttempts: 1000 }).attest(PID_WEB, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const err = await failure(pending);
    expect(err.code).toBe(Code.CANCELLED);
  });
});

describe('kubelet authentication and authorization errors', () => {
  it('403: PermissionDenied naming nodes/proxy and the identity used, without retrying for 30 s', async () => {
    kubelet.allowedTokens.clear();
    const start = kubelet.requests;
    const err = await failure(attestor({ maxPollAttempts: 60 }).attest(PID_WEB, live()));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.message).toContain('returned 403 (Forbidden (user=system:serviceaccount:spire:spire-agent');
    expect(err.message).toContain(`the bearer token from ${tokenPath} (sub "system:serviceaccount:spire:spire-agent", aud "https://kubernetes.default.svc")`);
    expect(err.message).toContain('"get" on "nodes/proxy"');
    expect(err.message).not.toContain(TOKEN);
    expect(kubelet.requests - start).toBe(1);
  });

  it('401: Unauthenticated hinting at the kubelet token webhook', async () => {
    const err = await failure(attestor({ useAnonymousAuthentication: true }).attest(PID_WEB, live()));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toContain('returned 401 (Unauthorized)');
    expect(err.message).toContain('does not serve anonymous requests');
  });

  it('401 for a token: Unauthenticated hinting at the kubelet token webhook and the audience', async () => {
    const noWebhook = await startFakeKubelet({ nodeName: 'node-a', clientCertAuth: true }); // answers 401 to any token
    try {
      await writeFile(caPath, noWebhook.caPem);
      const err = await failure(attestor({}, noWebhook).attest(PID_WEB, live()));
      expect(err.code).toBe(Code.UNAUTHENTICATED);
      expect(err.message).toContain('the kubelet did not accept the bearer token from');
      expect(err.message).toContain('--authentication-token-webhook=true');
      expect(err.message).toContain('audience');
    } finally {
      await Promise.all(attestors.splice(0).map((a) => a.close()));
      await noWebhook.close();
    }
  });

  it('an empty token file is a clear error', async () => {
    await writeFile(tokenPath, '  \n');
    const err = await failure(attestor().attest(PID_WEB, live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe(`kubelet: the token file ${tokenPath} (token_path) is empty`);
  });

  it('client certificate authentication', async () => {
    const certKubelet = await startFakeKubelet({ nodeName: 'node-a', clientCertAuth: true });
    try {
      await writeFile(caPath, certKubelet.caPem);
      const certPath = join(root, 'client.crt');
      const keyPath = join(root, 'client.key');
      await writeFile(certPath, certKubelet.clientCert!.certPem);
      await writeFile(keyPath, certKubelet.clientCert!.keyPem);
      certKubelet.pods.set(POD_UID, webPod());
      const values = await attestor({ certificatePath: certPath, privateKeyPath: keyPath }, certKubelet).attest(PID_WEB, live());
      expect(values).toContain('container-name:web');
      expect(certKubelet.lastAuthorization).toBeUndefined();
    } finally {
      await Promise.all(attestors.splice(0).map((a) => a.close()));
      await certKubelet.close();
    }
  });

  it('a certificate path without a key path is refused at construction', () => {
    expect(() => attestor({ certificatePath: '/x.crt' })).toThrow('kubelet: private_key_path is required with certificate_path');
  });
});

describe('kubelet TLS verification', () => {
  it('a kubelet certificate from another CA is refused with a clear error', async () => {
    await writeFile(caPath, (await generateCa('some-other-ca')).certPem);
    const err = await failure(attestor().attest(PID_WEB, live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain(`is not signed by the kubelet CA in ${caPath}`);
  });

  it('with a node name, a certificate for another name is refused', async () => {
    const err = await failure(attestor({ nodeName: 'node-b' }).attest(PID_WEB, live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('is not valid for the node name "node-b"');
  });

  it('the node name comes from the node_name_env variable', async () => {
    const err = await failure(attestor({ nodeName: undefined, nodeNameEnv: 'NODE', env: { NODE: 'node-b' } }).attest(PID_WEB, live()));
    expect(err.message).toContain('"node-b"');
  });

  it('without a node name only the chain is verified (127.0.0.1), but it IS verified', async () => {
    const noIpSan = await startFakeKubelet({ nodeName: 'node-a', loopbackSan: false });
    try {
      noIpSan.allowedTokens.add(TOKEN);
      noIpSan.pods.set(POD_UID, webPod());
      await writeFile(caPath, noIpSan.caPem);
      const values = await attestor({ nodeName: undefined }, noIpSan).attest(PID_WEB, live());
      expect(values).toContain('container-name:web');
      await writeFile(caPath, (await generateCa('some-other-ca')).certPem);
      const err = await failure(attestor({ nodeName: undefined }, noIpSan).attest(PID_WEB, live()));
      expect(err.message).toContain('is not signed by the kubelet CA');
    } finally {
      await Promise.all(attestors.splice(0).map((a) => a.close()));
      await noIpSan.close();
    }
  });

  it('skip_kubelet_verification works, and says so at start', async () => {
    await writeFile(caPath, (await generateCa('some-other-ca')).certPem);
    const values = await attestor({ skipKubeletVerification: true, nodeName: 'node-b' }).attest(PID_WEB, live());
    expect(values).toContain('container-name:web');
    expect(logs.find((l) => l['level'] === 'warn' && String(l['msg']).includes('skip_kubelet_verification'))).toBeDefined();
  });

  it('a missing CA file is a clear error', async () => {
    const err = await failure(attestor({ kubeletCaPath: join(root, 'nope.crt') }).attest(PID_WEB, live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('kubelet: unable to load the kubelet CA (kubelet_ca_path) from');
  });
});

describe('k8s attestor metrics', () => {
  /** A K8sAttestorMetrics that keeps what it was told. */
  function recording(): { metrics: K8sAttestorMetrics; outcomes: KubeletOutcome[]; counts: { hits: number; misses: number } } {
    const outcomes: KubeletOutcome[] = [];
    const counts = { hits: 0, misses: 0 };
    return {
      metrics: {
        kubelet: { request: (outcome, seconds) => void (seconds >= 0 && outcomes.push(outcome)) },
        podIndexHits: { inc: () => void counts.hits++ },
        podIndexMisses: { inc: () => void counts.misses++ },
      },
      outcomes,
      counts,
    };
  }

  it('counts a kubelet request per fetch, a miss when waiting for it and a hit when the shared list answers', async () => {
    const r = recording();
    const a = attestor({ metrics: r.metrics, podListMaxAgeMs: 60_000 });
    await a.attest(PID_WEB, live());
    await a.attest(PID_SIDECAR, live());
    await a.attest(PID_HOST, live()); // not in a container: no lookup at all
    expect([r.outcomes, r.counts]).toEqual([['ok'], { hits: 1, misses: 1 }]);
  });

  it('100 attestations of known containers 50 ms apart: one kubelet request; a new container: one more', async () => {
    const r = recording();
    const a = attestor({ metrics: r.metrics }); // the default pod_list_max_age (10 s)
    const start = kubelet.requests;
    for (let i = 0; i < 100; i++) {
      const values = await a.attest(i % 2 === 0 ? PID_WEB : PID_SIDECAR, live());
      expect(values).toContain(i % 2 === 0 ? 'container-name:web' : 'container-name:istio-proxy');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(kubelet.requests - start).toBe(1);
    expect(r.counts).toEqual({ hits: 99, misses: 1 });

    // A container started since the last fetch: one shared refetch, whoever asks.
    const pod = webPod() as { status: { containerStatuses: unknown[] } };
    pod.status.containerStatuses.push({ name: 'late', image: 'late:1', imageID: 'late@sha256:1', containerID: `containerd://${LATE_CID}` });
    kubelet.pods.set(POD_UID, pod);
    const late = await Promise.all(Array.from({ length: 10 }, () => a.attest(PID_LATE, live())));
    expect(late.every((values) => values.includes('container-name:late'))).toBe(true);
    expect(await a.attest(PID_WEB, live())).toContain('container-name:web');
    expect(kubelet.requests - start).toBe(2);
    expect(r.outcomes).toEqual(['ok', 'ok']);
    expect(r.counts).toEqual({ hits: 100, misses: 11 });
  });

  it('names failed requests by outcome: forbidden, unauthorized, timeout, credentials_error', async () => {
    const r = recording();
    kubelet.allowedTokens.clear();
    await failure(attestor({ metrics: r.metrics }).attest(PID_WEB, live()));
    await failure(attestor({ metrics: r.metrics, useAnonymousAuthentication: true }).attest(PID_WEB, live()));
    kubelet.allowedTokens.add(TOKEN);
    kubelet.delayMs = 300;
    await failure(attestor({ metrics: r.metrics, kubeletTimeoutMs: 50, maxPollAttempts: 1 }).attest(PID_WEB, live()));
    kubelet.delayMs = 0;
    await failure(attestor({ metrics: r.metrics, tokenPath: join(root, 'missing-token') }).attest(PID_WEB, live()));
    expect(r.outcomes).toEqual(['forbidden', 'unauthorized', 'timeout', 'credentials_error']);
  });
});
