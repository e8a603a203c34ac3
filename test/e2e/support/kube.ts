/**
 * What the e2e tests use to talk to the cluster test/e2e/run.ts started: kubectl with its
 * admin kubeconfig, the server's admin CLI through `kubectl exec`, cgroup readings.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../../support/server-process.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the e2e suite with \`npm run test:e2e\` (test/e2e/run.ts), which starts the cluster`);
  return v;
}

export const E2E = {
  get kubeconfig(): string {
    return env('E2E_KUBECONFIG');
  },
  get bin(): string {
    return env('E2E_BIN');
  },
  get images(): string {
    return env('E2E_IMAGES');
  },
};

export const OVERLAY = join(REPO, 'test/e2e/overlay');
export const TRUST_DOMAIN = 'example.org';
export const CLUSTER = 'example-cluster';
export const NODE = 'node1';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl; resolves with the exit code and output whatever the code. */
export function kubectlResult(args: string[], input?: string, timeoutMs = 120_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(join(E2E.bin, 'kubectl'), [`--kubeconfig=${E2E.kubeconfig}`, ...args], { maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs kubectl and returns stdout; throws with stderr on a non-zero exit. */
export async function kubectl(args: string[], input?: string, timeoutMs?: number): Promise<string> {
  const r = await kubectlResult(args, input, timeoutMs);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export async function kubectlJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
}

const SERVER_CLI = ['/nodejs/bin/node', '/opt/spiffe-node-agent/bin/spiffe-server.js'];
const ADMIN_SOCKET = '/tmp/spire-server/private/api.sock';

/** `spiffe-server <command…> -socketPath …` inside spiffe-server-0, as manifests/README.md does it. */
export async function serverCli(command: string[], flags: string[] = []): Promise<string> {
  return kubectl(['-n', 'spire-server', 'exec', 'spiffe-server-0', '--', ...SERVER_CLI, ...command, '-socketPath', ADMIN_SOCKET, ...flags]);
}

/** Creates a registration entry; returns its entry ID. */
export async function createEntry(opts: { spiffeId: string; parentId?: string; selectors: string[]; node?: boolean; ttlSeconds?: number }): Promise<string> {
  const flags = ['-spiffeID', opts.spiffeId, ...opts.selectors.flatMap((s) => ['-selector', s])];
  if (opts.ttlSeconds !== undefined) flags.push('-x509SVIDTTL', String(opts.ttlSeconds));
  if (opts.node === true) flags.push('-node');
  else flags.push('-parentID', opts.parentId ?? `spiffe://${TRUST_DOMAIN}/k8s-cluster/${CLUSTER}`);
  const out = await serverCli(['entry', 'create'], flags);
  const id = /Entry ID\s*:\s*(\S+)/.exec(out)?.[1];
  if (id === undefined) throw new Error(`entry create printed no entry ID:\n${out}`);
  return id;
}

/** Polls `fn` until it returns a value other than undefined. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String((last as Error).message ?? last)}`}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface PodInfo {
  name: string;
  uid: string;
  ready: boolean;
  hostIP: string;
  containers: { name: string; ready: boolean; restartCount: number; containerID: string; image: string; imageID: string }[];
}

export async function podsOf(namespace: string, selector: string): Promise<PodInfo[]> {
  type Pod = {
    metadata: { name: string; uid: string };
    status: {
      hostIP?: string;
      conditions?: { type: string; status: string }[];
      containerStatuses?: { name: string; ready: boolean; restartCount: number; containerID?: string; image: string; imageID: string }[];
    };
  };
  const list = await kubectlJson<{ items: Pod[] }>(['-n', namespace, 'get', 'pods', '-l', selector]);
  return list.items.map((p) => ({
    name: p.metadata.name,
    uid: p.metadata.uid,
    ready: p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    hostIP: p.status.hostIP ?? '',
    containers: (p.status.containerStatuses ?? []).map((c) => ({ name: c.name, ready: c.ready, restartCount: c.restartCount, containerID: c.containerID ?? '', image: c.image, imageID: c.imageID })),
  }));
}

export interface CgroupMemory {
  /** memory.usage_in_bytes (v1) or memory.current (v2). */
  usage: number;
  /** memory.stat rss (v1) or anon (v2): anonymous memory. */
  anon: number;
  path: string;
}

/** The memory a container is charged, read from the host's cgroup of that container (cgroupfs driver). */
export function containerMemory(podUid: string, containerId: string): CgroupMemory {
  const id = containerId.replace(/^containerd:\/\//, '');
  for (const qos of ['burstable/', 'besteffort/', '']) {
    const v1 = `/sys/fs/cgroup/memory/kubepods/${qos}pod${podUid}/${id}`;
    if (existsSync(join(v1, 'memory.usage_in_bytes'))) {
      const stat = readFileSync(join(v1, 'memory.stat'), 'utf8');
      return { usage: Number(readFileSync(join(v1, 'memory.usage_in_bytes'), 'utf8')), anon: Number(/^rss (\d+)$/m.exec(stat)?.[1] ?? NaN), path: v1 };
    }
    const v2 = `/sys/fs/cgroup/kubepods/${qos}pod${podUid}/${id}`;
    if (existsSync(join(v2, 'memory.current'))) {
      const stat = readFileSync(join(v2, 'memory.stat'), 'utf8');
      return { usage: Number(readFileSync(join(v2, 'memory.current'), 'utf8')), anon: Number(/^anon (\d+)$/m.exec(stat)?.[1] ?? NaN), path: v2 };
    }
  }
  throw new Error(`no memory cgroup found for pod ${podUid} container ${id}`);
}

export const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
