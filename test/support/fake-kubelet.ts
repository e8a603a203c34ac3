/**
 * A fake kubelet: a real HTTPS server (node:https) on 127.0.0.1 serving `GET /pods` from a
 * map that tests mutate, with a generated kubelet CA and serving certificate, bearer-token
 * or client-certificate authentication, and request counters.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

import { issueTestLeaf, makeTestCa, type PemPair, type TestCa } from './ca-fixtures.ts';

export type { PemPair };

/** A generated CA that can issue leaves (a self-signed test CA). */
export type GeneratedCa = TestCa & { readonly certPem: string };

/** A self-signed CA (P-256), valid from yesterday for a year. */
export async function generateCa(name: string): Promise<GeneratedCa> {
  const now = Date.now();
  const ca = await makeTestCa({ name: `CN=${name}`, notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 365 * 86_400_000) });
  return { ...ca, certPem: ca.pem };
}

/** A leaf issued by `ca`: serving (`dns`/`ips` SANs) or client (`cn`) certificate. */
export const issueLeaf = issueTestLeaf;

/** Options of {@link startFakeKubelet}. */
export interface FakeKubeletOptions {
  /** The node name the serving certificate is issued for. Default `node-a`. */
  nodeName?: string;
  /** Also put 127.0.0.1 in the serving certificate. Default true. */
  loopbackSan?: boolean;
  /** Require a client certificate issued by a generated client CA instead of a token. */
  clientCertAuth?: boolean;
}

/** A running fake kubelet. */
export interface FakeKubelet {
  /** `https://127.0.0.1:<port>`. */
  readonly baseUrl: string;
  readonly nodeName: string;
  /** The kubelet CA, PEM: what `kubelet_ca_path` should hold. */
  readonly caPem: string;
  /** With `clientCertAuth`: a client certificate the kubelet accepts. */
  readonly clientCert: PemPair | undefined;
  /** The pod list, keyed by pod UID; tests add, change and remove pods at any time. */
  readonly pods: Map<string, unknown>;
  /** Bearer tokens that may list pods; a token not in here gets 403, no token 401. */
  readonly allowedTokens: Set<string>;
  /** Requests received on /pods, and the largest number ever in flight at once. */
  readonly requests: number;
  readonly maxInFlight: number;
  /** TLS connections accepted so far, and those still open (to see keep-alive and closing). */
  readonly connections: number;
  readonly openConnections: number;
  /** The Authorization header of the last request. */
  readonly lastAuthorization: string | undefined;
  /** Delay before answering, ms (to make concurrent callers overlap). */
  delayMs: number;
  /** Called with the request number before answering (to change pods "later"). */
  onRequest: ((n: number) => void) | undefined;
  close(): Promise<void>;
}

/** Starts a fake kubelet on 127.0.0.1 with a fresh CA. */
export async function startFakeKubelet(options: FakeKubeletOptions = {}): Promise<FakeKubelet> {
  const nodeName = options.nodeName ?? 'node-a';
  const ca = await generateCa('kubelet-ca');
  const serving = await issueLeaf(ca, {
    cn: nodeName,
    dns: [nodeName],
    ips: options.loopbackSan === false ? [] : ['127.0.0.1'],
    usage: 'server',
  });
  const clientCa = options.clientCertAuth ? await generateCa('kubelet-client-ca') : undefined;
  const clientCert = clientCa ? await issueLeaf(clientCa, { cn: 'system:serviceaccount:spire:spire-agent', usage: 'client' }) : undefined;

  const pods = new Map<string, unknown>();
  const allowedTokens = new Set<string>();
  let requests = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let lastAuthorization: string | undefined;
  let connections = 0;
  let openConnections = 0;

  const server: Server = createServer(
    {
      cert: serving.certPem,
      key: serving.keyPem,
      ...(clientCa ? { ca: clientCa.certPem, requestCert: true, rejectUnauthorized: false } : {}),
    },
    (req, res) => {
      if (req.url !== '/pods' || req.method !== 'GET') {
        res.writeHead(404).end('404 page not found');
        return;
      }
      requests++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      lastAuthorization = req.headers.authorization;
      const n = requests;
      const answer = (): void => {
        inFlight--;
        fake.onRequest?.(n);
        if (clientCa) {
          const socket = req.socket as TLSSocket;
          if (!socket.authorized) {
            res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
            return;
          }
        } else {
          const auth = req.headers.authorization;
          if (auth === undefined || !auth.startsWith('Bearer ')) {
            res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
            return;
          }
          if (!allowedTokens.has(auth.slice('Bearer '.length))) {
            res
              .writeHead(403, { 'content-type': 'text/plain' })
              .end('Forbidden (user=system:serviceaccount:spire:spire-agent, verb=get, resource=nodes, subresource(s)=[proxy])');
            return;
          }
        }
        const body = JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [...pods.values()] });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      };
      if (fake.delayMs > 0) setTimeout(answer, fake.delayMs);
      else answer();
    },
  );
  server.on('secureConnection', (socket: TLSSocket) => {
    connections++;
    openConnections++;
    socket.once('close', () => openConnections--);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  const fake: FakeKubelet = {
    baseUrl: `https://127.0.0.1:${port}`,
    nodeName,
    caPem: ca.certPem,
    clientCert,
    pods,
    allowedTokens,
    get requests() {
      return requests;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get connections() {
      return connections;
    },
    get openConnections() {
      return openConnections;
    },
    get lastAuthorization() {
      return lastAuthorization;
    },
    delayMs: 0,
    onRequest: undefined,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  return fake;
}

/** One container of {@link podJson}. */
export interface FakeContainer {
  name: string;
  image: string;
  /** Empty while the image is being pulled. */
  imageID?: string;
  /** Full `containerd://<id>`; omit while the container has not started. */
  containerID?: string;
}

/** A pod as the kubelet's /pods lists it (the fields attestation reads, plus a few more). */
export function podJson(p: {
  uid: string;
  name: string;
  namespace: string;
  serviceAccountName?: string;
  nodeName?: string;
  phase?: string;
  labels?: Record<string, string>;
  owners?: Array<{ kind: string; name: string; uid: string }>;
  containers: FakeContainer[];
  initContainers?: FakeContainer[];
  ephemeralContainers?: FakeContainer[];
}): unknown {
  const status = (c: FakeContainer): unknown => ({
    name: c.name,
    image: c.image,
    imageID: c.imageID ?? '',
    ...(c.containerID !== undefined ? { containerID: c.containerID } : {}),
    ready: c.containerID !== undefined,
    restartCount: 0,
    state: c.containerID !== undefined ? { running: { startedAt: '2026-01-01T00:00:00Z' } } : { waiting: { reason: 'ContainerCreating' } },
  });
  return {
    metadata: {
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      labels: p.labels ?? {},
      ...(p.owners ? { ownerReferences: p.owners.map((o) => ({ apiVersion: 'apps/v1', controller: true, ...o })) } : {}),
    },
    spec: {
      serviceAccountName: p.serviceAccountName ?? 'default',
      nodeName: p.nodeName ?? 'node-a',
      containers: p.containers.map((c) => ({ name: c.name, image: c.image })),
      ...(p.initContainers ? { initContainers: p.initContainers.map((c) => ({ name: c.name, image: c.image })) } : {}),
    },
    status: {
      phase: p.phase ?? 'Running',
      containerStatuses: p.containers.map(status),
      ...(p.initContainers ? { initContainerStatuses: p.initContainers.map(status) } : {}),
      ...(p.ephemeralContainers ? { ephemeralContainerStatuses: p.ephemeralContainers.map(status) } : {}),
    },
  };
}
