/**
 * How often the k8s attestor asks the kubelet for `/pods` (issue 10 item 4): a known
 * container in a known pod is answered from the shared pod index up to `podListMaxAgeMs`;
 * an unknown pod or container triggers one shared refetch; refetches start at least
 * `poll_retry_interval` apart whoever asks. Driven by a manual clock and a fake kubelet transport.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createK8sAttestor, type K8sAttestorOptions, type K8sWorkloadAttestor } from '../../src/attestors/workload/k8s/k8s.ts';
import type { KubeletTransport } from '../../src/attestors/workload/k8s/kubelet-client.ts';
import { ManualTimerClock, settle } from '../support/manual-timer-clock.ts';
import { createLogger } from '../../src/common/logger.ts';

const POD = '5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10';
const GONE_POD = '7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910';
const cid = (c: string): string => c.repeat(64);

/** Callers: pid → where its cgroup puts it. */
const CALLERS = {
  web: { pid: 11, pod: POD, container: cid('a') },
  sidecar: { pid: 12, pod: POD, container: cid('b') },
  late: { pid: 13, pod: POD, container: cid('c') }, // listed only once `state.late` is set
  gone: { pid: 14, pod: GONE_POD, container: cid('d') }, // its pod is listed while `state.gone` is false
  foreign: { pid: 15, pod: undefined, container: cid('e') }, // a container no pod lists (docker run on the node)
} as const;
type Caller = keyof typeof CALLERS;

const status = (name: string, container: string): unknown => ({ name, image: name, imageID: `${name}@sha256:1`, containerID: `containerd://${container}` });

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'k8s-load-'));
  for (const c of Object.values(CALLERS)) {
    await mkdir(join(root, 'proc', String(c.pid)), { recursive: true });
    const path = c.pod !== undefined ? `/kubepods/burstable/pod${c.pod}/${c.container}` : `/../docker-${c.container}.scope`;
    await writeFile(join(root, 'proc', String(c.pid), 'cgroup'), `0::${path}\n`);
  }
  await writeFile(join(root, 'token'), 'token\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Harness {
  attestor: K8sWorkloadAttestor;
  clock: ManualTimerClock;
  state: { late: boolean; gone: boolean };
  requests: () => number;
  counts: { hits: number; misses: number };
  attest: (caller: Caller) => Promise<string[]>;
}

function setup(overrides: Partial<K8sAttestorOptions> = {}): Harness {
  const clock = new ManualTimerClock();
  const state = { late: false, gone: false };
  let requests = 0;
  const transport: KubeletTransport = async (url) => {
    if (url !== 'https://node-a:10250/pods') throw new Error(`unexpected request: GET ${url}`);
    requests++;
    const items: unknown[] = [
      {
        metadata: { uid: POD, name: 'web', namespace: 'demo', labels: { app: 'web' } },
        spec: { serviceAccountName: 'web', nodeName: 'node-a' },
        status: {
          phase: 'Running',
          containerStatuses: [
            status('web', CALLERS.web.container),
            status('sidecar', CALLERS.sidecar.container),
            ...(state.late ? [status('late', CALLERS.late.container)] : []),
          ],
        },
      },
    ];
    if (!state.gone) {
      items.push({
        metadata: { uid: GONE_POD, name: 'job', namespace: 'demo' },
        spec: { serviceAccountName: 'job', nodeName: 'node-a' },
        status: { phase: 'Running', containerStatuses: [status('job', CALLERS.gone.container)] },
      });
    }
    return { statusCode: 200, body: JSON.stringify({ items }) };
  };
  const counts = { hits: 0, misses: 0 };
  const attestor = createK8sAttestor({
    logger: createLogger({ name: 'test', level: 'silent' }),
    procRoot: join(root, 'proc'),
    tokenPath: join(root, 'token'),
    nodeName: 'node-a',
    transport,
    clock,
    env: {},
    maxPollAttempts: 4,
    metrics: {
      kubelet: { request() {} },
      podIndexHits: { inc: () => void counts.hits++ },
      podIndexMisses: { inc: () => void counts.misses++ },
    },
    ...overrides,
  });
  const attest = (caller: Caller): Promise<string[]> => settle(attestor.attest(CALLERS[caller].pid, new AbortController().signal), clock);
  return { attestor, clock, state, requests: () => requests, counts, attest };
}

/** One step: move the clock, change what the kubelet lists, attest, then expect. */
interface Step {
  advance?: number;
  set?: Partial<Harness['state']>;
  attest: Caller;
  /** A selector the answer must hold; `error` when it must fail. */
  expect: string;
  /** Kubelet requests so far, after this step. */
  requests: number;
  /** Whether this attestation was answered from the index without waiting. */
  hit: boolean;
}

const cases: Array<{ name: string; options?: Partial<K8sAttestorOptions>; steps: Step[] }> = [
  {
    name: 'known containers within the default max age (10 s): one request',
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { advance: 2000, attest: 'sidecar', expect: 'container-name:sidecar', requests: 1, hit: true },
      { advance: 2000, attest: 'web', expect: 'container-name:web', requests: 1, hit: true },
      { advance: 5999, attest: 'web', expect: 'container-name:web', requests: 1, hit: true },
    ],
  },
  {
    name: 'a known container after the max age: one refetch, then hits again',
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { advance: 10_000, attest: 'web', expect: 'container-name:web', requests: 2, hit: false },
      { advance: 9_000, attest: 'sidecar', expect: 'container-name:sidecar', requests: 2, hit: true },
    ],
  },
  {
    name: 'pod_list_max_age = poll_retry_interval (SPIRE): calls 2 s apart refetch every time',
    options: { podListMaxAgeMs: 500 },
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { advance: 2000, attest: 'web', expect: 'container-name:web', requests: 2, hit: false },
      { advance: 2000, attest: 'web', expect: 'container-name:web', requests: 3, hit: false },
      { advance: 499, attest: 'sidecar', expect: 'container-name:sidecar', requests: 3, hit: true },
    ],
  },
  {
    name: 'an unknown container in a known pod: one refetch (paced), then answered from the index',
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { advance: 100, set: { late: true }, attest: 'late', expect: 'container-name:late', requests: 2, hit: false },
      { advance: 100, attest: 'late', expect: 'container-name:late', requests: 2, hit: true },
      { advance: 100, attest: 'web', expect: 'container-name:web', requests: 2, hit: true },
    ],
  },
  {
    name: 'a container that never appears: polls at poll_retry_interval for the bounded wait, then pod-level selectors',
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { attest: 'late', expect: 'pod-name:web', requests: 5, hit: false },
    ],
  },
  {
    name: 'a deleted pod is served until the next refetch, then dropped',
    steps: [
      { attest: 'gone', expect: 'pod-name:job', requests: 1, hit: false },
      { advance: 1000, set: { gone: true }, attest: 'gone', expect: 'pod-name:job', requests: 1, hit: true },
      // A refetch for another reason (an unknown container) drops it at once.
      { advance: 1000, set: { late: true }, attest: 'late', expect: 'container-name:late', requests: 2, hit: false },
      { advance: 100, attest: 'gone', expect: 'error', requests: 6, hit: false },
    ],
  },
  {
    name: 'a container given up on is not polled for again: pod-level selectors at once, found once a list names it',
    steps: [
      { attest: 'web', expect: 'container-name:web', requests: 1, hit: false },
      { attest: 'late', expect: 'pod-name:web', requests: 5, hit: false },
      { advance: 100, attest: 'late', expect: 'pod-name:web', requests: 5, hit: true },
      // An older list: one refetch (as for a known container), still missing, answered at once.
      { advance: 10_000, attest: 'late', expect: 'pod-name:web', requests: 6, hit: false },
      { advance: 10_000, set: { late: true }, attest: 'late', expect: 'container-name:late', requests: 7, hit: false },
      { advance: 100, attest: 'late', expect: 'container-name:late', requests: 7, hit: true },
    ],
  },
  {
    name: 'a container no pod lists: one bounded wait, then Unavailable at once until the list is older than the max age',
    steps: [
      { attest: 'foreign', expect: 'error', requests: 4, hit: false },
      { advance: 5000, attest: 'foreign', expect: 'error', requests: 4, hit: true },
      { advance: 5000, attest: 'foreign', expect: 'error', requests: 5, hit: false },
    ],
  },
];

describe('kubelet load: when the pod index refetches', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const h = setup(c.options);
      try {
        for (const [i, step] of c.steps.entries()) {
          if (step.set !== undefined) Object.assign(h.state, step.set);
          if (step.advance !== undefined) h.clock.advance(step.advance);
          const before = { ...h.counts };
          const result = await h.attest(step.attest).then(
            (values) => values,
            (err: unknown) => err,
          );
          const where = `step ${i} (${step.attest})`;
          if (step.expect === 'error') expect(result, where).toBeInstanceOf(Error);
          else expect(result, where).toContain(step.expect);
          expect(h.requests(), where).toBe(step.requests);
          expect({ hits: h.counts.hits - before.hits, misses: h.counts.misses - before.misses }, where).toEqual(
            step.hit ? { hits: 1, misses: 0 } : { hits: 0, misses: 1 },
          );
        }
      } finally {
        await h.attestor.close();
      }
    });
  }

  it('concurrent callers of an unknown container share one refetch', async () => {
    const h = setup();
    try {
      await h.attest('web');
      h.state.late = true;
      h.clock.advance(1000);
      const all = await settle(Promise.all(Array.from({ length: 50 }, (_, i) => h.attestor.attest(CALLERS[i % 2 ? 'late' : 'web'].pid, new AbortController().signal))), h.clock);
      expect(all[0]).toContain('container-name:web');
      expect(all[1]).toContain('container-name:late');
      expect(h.requests()).toBe(2);
      // The first call missed; then 25 web hits, and 25 late callers that waited for the refetch.
      expect(h.counts).toEqual({ hits: 25, misses: 1 + 25 });
    } finally {
      await h.attestor.close();
    }
  });

  it('a flood of callers from a container no pod lists: one request per poll_retry_interval for one bounded wait, then none', async () => {
    const h = setup({ maxPollAttempts: 60 });
    try {
      await h.attest('web');
      // 1,000 callers from a container no pod lists, one every 5 ms for 5 s; each waits up to 30 s.
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < 1000; i++) {
        pending.push(h.attestor.attest(CALLERS.foreign.pid, new AbortController().signal).catch((err: unknown) => err));
        h.clock.advance(5);
        await new Promise((r) => setImmediate(r));
      }
      const elapsed = h.clock.now();
      // Requests start at least 500 ms apart: at most one per 500 ms since the first.
      expect(h.requests()).toBeLessThanOrEqual(1 + Math.floor(elapsed / 500) + 1);
      expect(h.requests()).toBeGreaterThan(2); // the unknown callers do refetch
      await settle(Promise.all(pending), h.clock);
      // The first caller's bounded wait (60 × 500 ms) ends the polling for all of them.
      expect(h.requests()).toBeLessThanOrEqual(1 + 60 + 1);
      expect(h.clock.now()).toBeLessThan(31_000);
      // A second wave within the max age costs nothing; after it, one refetch.
      const before = h.requests();
      const wave = (): Promise<unknown[]> =>
        settle(Promise.all(Array.from({ length: 100 }, () => h.attestor.attest(CALLERS.foreign.pid, new AbortController().signal).catch((err: unknown) => err))), h.clock);
      const first = await wave();
      expect(first.every((e) => e instanceof Error && e.message.includes('not polled for again'))).toBe(true);
      expect(h.requests()).toBe(before);
      h.clock.advance(10_000);
      await wave();
      expect(h.requests()).toBe(before + 1);
    } finally {
      await h.attestor.close();
    }
  });
});
