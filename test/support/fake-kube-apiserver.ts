/**
 * A kube-apiserver for tests, faked at the protocol level only: a real HTTPS server (generated
 * CA and serving certificate) that authenticates callers by bearer token and serves what
 * k8s_psat uses, with real request and response shapes:
 *
 *   POST /apis/authentication.k8s.io/v1/tokenreviews   (201, TokenReview with status)
 *   GET  /api/v1/namespaces/<ns>/pods/<name>            (Pod, or 404 Status)
 *   GET  /api/v1/nodes/<name>                           (Node, or 404 Status)
 *
 * Projected service-account tokens are real JWTs signed by a generated issuer key, with the
 * real claim layout; the TokenReview checks issuer, signature, audience, expiry and (like the
 * real service-account authenticator) that the bound pod still exists with the same UID.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { issueTestLeaf, makeTestCa } from './ca-fixtures.ts';
import { createPsatIssuer, type TokenOptions } from './psat-issuer.ts';

export type { TokenOptions } from './psat-issuer.ts';


/** A pod to serve. */
export interface FakePodSpec {
  namespace: string;
  name: string;
  /** Default: a random UUID. */
  uid?: string;
  nodeName: string;
  hostIp?: string;
  serviceAccount?: string;
  labels?: Record<string, string>;
}

/** A node to serve. */
export interface FakeNodeSpec {
  name: string;
  /** Default: a random UUID; '' serves a node without a UID. */
  uid?: string;
  labels?: Record<string, string>;
}

type Resource = 'tokenreviews' | 'pods' | 'nodes';
type KubeObject = Record<string, unknown> & { metadata: Record<string, unknown> };

export interface FakeKubeApiserver {
  /** `https://127.0.0.1:<port>`. */
  readonly url: string;
  readonly caPem: string;
  /** The bearer token callers must present. */
  readonly callerToken: string;
  readonly issuer: string;
  /** Resources the caller is not allowed to use (403 with the real RBAC message). */
  readonly forbidden: Set<Resource>;
  /** Whether TokenReview checks that the token's pod still exists with the same UID (default true, as a real apiserver). */
  validateBoundObjects: boolean;
  /** Every request received, in order. */
  readonly requests: Array<{ method: string; path: string; status: number }>;
  /** The token of every TokenReview received, in order (kept in memory only, for assertions). */
  readonly reviewedTokens: string[];
  addPod(spec: FakePodSpec): KubeObject;
  deletePod(namespace: string, name: string): void;
  addNode(spec: FakeNodeSpec): KubeObject;
  /** Mints a projected token for a served pod (its service account, UID and node). */
  tokenForPod(namespace: string, name: string, opts?: TokenOptions): Promise<string>;
  /** Writes a kubeconfig for this server (CA data, bearer token) and returns its path. */
  writeKubeconfig(path: string, opts?: { token?: string }): Promise<string>;
  close(): Promise<void>;
}

export interface FakeKubeApiserverOptions {
  issuer?: string;
  /** Signing algorithm of the service-account issuer key. Default RS256 (kube's default key type). */
  alg?: 'RS256' | 'ES256';
  /** The caller's identity in 403 messages. */
  callerUser?: string;
}

async function servingCert(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const now = Date.now();
  const ca = await makeTestCa({ name: 'CN=kubernetes', notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) });
  const leaf = await issueTestLeaf(ca, {
    cn: 'kube-apiserver',
    ips: ['127.0.0.1'],
    dns: ['localhost', 'kubernetes.default.svc'],
    usage: 'server',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
  });
  return { caPem: ca.pem, ...leaf };
}

/** A metav1.Status body, as the apiserver sends with every error. */
function status(code: number, reason: string, message: string, details?: { name?: string; kind?: string }): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

function readBodyBytes(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The length-delimited and varint fields of one protobuf message, by field number (last wins; repeated kept in order). */
function protoFields(buf: Buffer): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = (): number => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[i++];
      if (b === undefined) throw new Error('truncated varint');
      n += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return n;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) varint();
    else if (wire === 2) {
      const len = varint();
      out.set(field, [...(out.get(field) ?? []), buf.subarray(i, i + len)]);
      i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

/**
 * A TokenReview sent as Kubernetes protobuf (client-go's default for built-in types: the
 * `k8s\0` magic, then runtime.Unknown{typeMeta{apiVersion, kind}, raw}), as the JSON form.
 */
function tokenReviewFromProtobuf(body: Buffer): { apiVersion?: string; kind?: string; spec?: { token?: string; audiences?: string[] } } {
  if (body.subarray(0, 4).toString('latin1') !== 'k8s\0') throw new Error('missing the k8s protobuf magic');
  const unknown = protoFields(body.subarray(4));
  const typeMeta = protoFields(unknown.get(1)?.[0] ?? Buffer.alloc(0));
  const review = protoFields(unknown.get(2)?.[0] ?? Buffer.alloc(0));
  const spec = protoFields(review.get(2)?.[0] ?? Buffer.alloc(0));
  return {
    apiVersion: typeMeta.get(1)?.[0]?.toString('utf8'),
    kind: typeMeta.get(2)?.[0]?.toString('utf8'),
    spec: { token: spec.get(1)?.[0]?.toString('utf8'), audiences: (spec.get(2) ?? []).map((a) => a.toString('utf8')) },
  };
}

/** The cluster name of {@link psatServerPlugin} and {@link psatAgentPlugin}: they must agree. */
const PSAT_CLUSTER = 'c1';

/**
 * A server's `NodeAttestor "k8s_psat"` block (ours and spire-server read the same) for one
 * cluster reviewed through `kubeconfig` (see writeKubeconfig), allowing the service account
 * `allowed` (`namespace:name`).
 */
export function psatServerPlugin(kubeconfig: string, allowed: string): string {
  return `  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "${PSAT_CLUSTER}" = {
          service_account_allow_list = ["${allowed}"]
          kube_config_file = "${kubeconfig}"
        }
      }
    }
  }`;
}

/** The agent's `NodeAttestor "k8s_psat"` block for the cluster of {@link psatServerPlugin}, presenting the token at `tokenPath`. */
export function psatAgentPlugin(tokenPath: string): string {
  return `  NodeAttestor "k8s_psat" {
    plugin_data {
      cluster = "${PSAT_CLUSTER}"
      token_path = "${tokenPath}"
    }
  }`;
}

/** Starts the fake apiserver on a free loopback port. */
export async function startFakeKubeApiserver(opts: FakeKubeApiserverOptions = {}): Promise<FakeKubeApiserver> {
  const alg = opts.alg ?? 'RS256';
  const issuer = opts.issuer ?? 'https://kubernetes.default.svc.cluster.local';
  const callerUser = opts.callerUser ?? 'system:serviceaccount:spire:spire-server';
  const tokens = createPsatIssuer({ issuer, alg });
  const callerToken = `caller-${randomUUID()}`;
  const tls = await servingCert();
  const pods = new Map<string, KubeObject>();
  const nodes = new Map<string, KubeObject>();
  const serviceAccountUids = new Map<string, string>();
  const requests: FakeKubeApiserver['requests'] = [];
  const forbidden = new Set<Resource>();
  let port = 0;

  const saUid = (ns: string, sa: string): string => {
    const key = `${ns}:${sa}`;
    let uid = serviceAccountUids.get(key);
    if (uid === undefined) serviceAccountUids.set(key, (uid = randomUUID()));
    return uid;
  };

  const livePodUid = (ns: string, name: string): string | undefined => pods.get(`${ns}/${name}`)?.metadata['uid'] as string | undefined;

  function forbiddenMessage(resource: Resource, name: string, namespace?: string): string {
    if (resource === 'tokenreviews') {
      return `tokenreviews.authentication.k8s.io is forbidden: User "${callerUser}" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`;
    }
    const scope = namespace === undefined ? 'at the cluster scope' : `in the namespace "${namespace}"`;
    return `${resource} "${name}" is forbidden: User "${callerUser}" cannot get resource "${resource}" in API group "" ${scope}`;
  }

  async function handle(req: IncomingMessage): Promise<[number, Record<string, unknown>]> {
    if (req.headers.authorization !== `Bearer ${callerToken}`) return [401, status(401, 'Unauthorized', 'Unauthorized')];
    const path = new URL(req.url ?? '/', 'https://x').pathname;
    const seg = path.split('/').slice(1).map(decodeURIComponent);
    if (path === '/apis/authentication.k8s.io/v1/tokenreviews') {
      if (req.method !== 'POST') return [405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`)];
      if (forbidden.has('tokenreviews')) return [403, status(403, 'Forbidden', forbiddenMessage('tokenreviews', ''), { kind: 'tokenreviews' })];
      let body: { apiVersion?: string; kind?: string; spec?: { token?: string; audiences?: string[] } };
      try {
        const raw = await readBodyBytes(req);
        // Answered in JSON either way: client-go accepts it (its Accept header lists */*).
        body = req.headers['content-type'] === 'application/vnd.kubernetes.protobuf' ? tokenReviewFromProtobuf(raw) : (JSON.parse(raw.toString('utf8')) as typeof body);
      } catch (err) {
        return [400, status(400, 'BadRequest', `the object provided is unrecognized: ${(err as Error).message}`)];
      }
      if (body.kind !== 'TokenReview' || body.apiVersion !== 'authentication.k8s.io/v1') {
        return [400, status(400, 'BadRequest', `the API version in the data (${body.apiVersion}) does not match the expected API version (authentication.k8s.io/v1)`)];
      }
      const token = body.spec?.token ?? '';
      if (token === '') return [400, status(400, 'BadRequest', 'token is required for TokenReview in authentication')];
      const audiences = body.spec?.audiences ?? [];
      server.reviewedTokens.push(token);
      return [201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: { token, audiences }, status: await tokens.review(token, audiences, server.validateBoundObjects ? livePodUid : undefined) }];
    }
    if (req.method !== 'GET') return [405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')];
    if (seg.length === 6 && seg[0] === 'api' && seg[1] === 'v1' && seg[2] === 'namespaces' && seg[4] === 'pods') {
      const [ns, name] = [seg[3] as string, seg[5] as string];
      if (forbidden.has('pods')) return [403, status(403, 'Forbidden', forbiddenMessage('pods', name, ns), { name, kind: 'pods' })];
      const pod = pods.get(`${ns}/${name}`);
      return pod === undefined ? [404, status(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' })] : [200, pod];
    }
    if (seg.length === 4 && seg[0] === 'api' && seg[1] === 'v1' && seg[2] === 'nodes') {
      const name = seg[3] as string;
      if (forbidden.has('nodes')) return [403, status(403, 'Forbidden', forbiddenMessage('nodes', name), { name, kind: 'nodes' })];
      const node = nodes.get(name);
      return node === undefined ? [404, status(404, 'NotFound', `nodes "${name}" not found`, { name, kind: 'nodes' })] : [200, node];
    }
    return [404, status(404, 'NotFound', 'the server could not find the requested resource', {})];
  }

  const https: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req: IncomingMessage, res: ServerResponse) => {
    handle(req).then(
      ([code, body]) => {
        requests.push({ method: req.method ?? '', path: req.url ?? '', status: code });
        res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      },
      (err: unknown) => {
        requests.push({ method: req.method ?? '', path: req.url ?? '', status: 500 });
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify(status(500, 'InternalError', String(err))));
      },
    );
  });
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const address = https.address();
  port = typeof address === 'object' && address !== null ? address.port : 0;

  const server: FakeKubeApiserver = {
    url: `https://127.0.0.1:${port}`,
    caPem: tls.caPem,
    callerToken,
    issuer,
    forbidden,
    validateBoundObjects: true,
    requests,
    reviewedTokens: [],
    addPod(spec) {
      const sa = spec.serviceAccount ?? 'default';
      const hostIp = spec.hostIp ?? '10.0.0.10';
      const pod: KubeObject = {
        kind: 'Pod',
        apiVersion: 'v1',
        metadata: {
          name: spec.name,
          namespace: spec.namespace,
          uid: spec.uid ?? randomUUID(),
          resourceVersion: String(requests.length + 1),
          creationTimestamp: new Date().toISOString(),
          labels: spec.labels ?? {},
        },
        spec: { nodeName: spec.nodeName, serviceAccountName: sa, containers: [{ name: 'spire-agent', image: 'ghcr.io/spiffe/spire-agent:1.13.0' }] },
        status: { phase: 'Running', hostIP: hostIp, hostIPs: [{ ip: hostIp }], podIP: '10.244.0.7' },
      };
      pods.set(`${spec.namespace}/${spec.name}`, pod);
      return pod;
    },
    deletePod(namespace, name) {
      pods.delete(`${namespace}/${name}`);
    },
    addNode(spec) {
      const node: KubeObject = {
        kind: 'Node',
        apiVersion: 'v1',
        metadata: { name: spec.name, uid: spec.uid ?? randomUUID(), labels: { 'kubernetes.io/hostname': spec.name, ...spec.labels } },
        status: { addresses: [{ type: 'Hostname', address: spec.name }] },
      };
      if (node.metadata['uid'] === '') delete node.metadata['uid'];
      nodes.set(spec.name, node);
      return node;
    },
    async tokenForPod(namespace, name, o = {}) {
      const pod = pods.get(`${namespace}/${name}`);
      if (pod === undefined) throw new Error(`fake-kube-apiserver: no pod ${namespace}/${name}`);
      const sa = (pod['spec'] as { serviceAccountName: string }).serviceAccountName;
      const nodeName = (pod['spec'] as { nodeName: string }).nodeName;
      return tokens.mint(
        {
          namespace,
          serviceAccount: { name: sa, uid: saUid(namespace, sa) },
          pod: { name, uid: pod.metadata['uid'] as string },
          node: { name: nodeName, uid: (nodes.get(nodeName)?.metadata['uid'] as string | undefined) ?? '' },
        },
        o,
      );
    },
    async writeKubeconfig(path, o = {}) {
      const ca = Buffer.from(tls.caPem).toString('base64');
      await writeFile(
        path,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          '- name: fake',
          '  cluster:',
          `    server: https://127.0.0.1:${port}`,
          `    certificate-authority-data: ${ca}`,
          'users:',
          '- name: spire-server',
          '  user:',
          `    token: ${o.token ?? callerToken}`,
          'contexts:',
          '- name: fake',
          '  context:',
          '    cluster: fake',
          '    user: spire-server',
          'current-context: fake',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      return path;
    },
    close() {
      return new Promise<void>((resolve) => {
        https.close(() => resolve());
        https.closeAllConnections();
      });
    },
  };
  return server;
}
