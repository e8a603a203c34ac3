/**
 * The k8s attestor's bounded wait with SPIRE's defaults (60 attempts, 500 ms apart), driven
 * by a manual clock and a fake kubelet transport, so "about 30 s" is checked exactly and instantly.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createK8sAttestor, type K8sWorkloadAttestor } from '../../src/attestors/workload/k8s/k8s.ts';
import type { KubeletResponse, KubeletTransport } from '../../src/attestors/workload/k8s/kubelet-client.ts';
import { ManualTimerClock, settle } from '../support/manual-timer-clock.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { createLogger } from '../../src/common/logger.ts';
import { failure } from '../support/api-failure.ts';

const POD_UID = '5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10';
const CID = 'a'.repeat(64);
const PID = 77;

const podList = (withContainer: boolean, present = true): string =>
  JSON.stringify({
    items: present
      ? [
          {
            metadata: { uid: POD_UID, name: 'web', namespace: 'demo' },
            spec: { serviceAccountName: 'web', nodeName: 'node-a' },
            status: {
              phase: 'Running',
              containerStatuses: [{ name: 'web', image: 'nginx', imageID: 'nginx@sha256:1', ...(withContainer ? { containerID: `containerd://${CID}` } : {}) }],
            },
          },
        ]
      : [],
  });

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'k8s-wait-'));
  await mkdir(join(root, 'proc', String(PID)), { recursive: true });
  const path = `/kubepods/burstable/pod${POD_UID}/${CID}`;
  await writeFile(join(root, 'proc', String(PID), 'cgroup'), `0::${path}\n`);
  await writeFile(join(root, 'token'), 'token\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function setup(reply: (n: number, clock: ManualTimerClock) => KubeletResponse): {
  attestor: K8sWorkloadAttestor;
  clock: ManualTimerClock;
  requests: () => number;
} {
  const clock = new ManualTimerClock();
  let requests = 0;
  const transport: KubeletTransport = async (url) => {
    if (url !== 'https://node-a:10250/pods') throw new Error(`unexpected request: GET ${url}`);
    return reply(++requests, clock);
  };
  const attestor = createK8sAttestor({
    logger: createLogger({ name: 'test', level: 'silent' }),
    procRoot: join(root, 'proc'),
    tokenPath: join(root, 'token'),
    nodeName: 'node-a',
    transport,
    clock,
    env: {},
  });
  return { attestor, clock, requests: () => requests };
}


describe('bounded wait with the default 60 × 500 ms', () => {
  it('container never listed: 60 pod lists over 29.5 s, then pod-level selectors', async () => {
    const { attestor, clock, requests } = setup(() => ({ statusCode: 200, body: podList(false) }));
    const values = await settle(attestor.attest(PID, new AbortController().signal), clock);
    expect(requests()).toBe(60);
    expect(clock.now()).toBe(59 * 500);
    expect(values).toContain('pod-uid:' + POD_UID);
    expect(values).not.toContain('container-name:web');
    await attestor.close();
  });

  it('container listed on the 7th pod list: found 3 s in', async () => {
    const { attestor, clock, requests } = setup((n) => ({ statusCode: 200, body: podList(n >= 7) }));
    const values = await settle(attestor.attest(PID, new AbortController().signal), clock);
    expect(requests()).toBe(7);
    expect(clock.now()).toBe(3000);
    expect(values).toContain('container-name:web');
    await attestor.close();
  });

  it('pod never listed: Unavailable after 60 attempts over 29.5 s', async () => {
    const { attestor, clock } = setup(() => ({ statusCode: 200, body: podList(false, false) }));
    const err = await failure(settle(attestor.attest(PID, new AbortController().signal), clock));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toBe(`k8s: pod ${POD_UID} (of container ${CID}) is not in the kubelet pod list after 60 attempts over 29.5s`);
    await attestor.close();
  });

  it('a kubelet that keeps failing: Unavailable with its last error', async () => {
    const { attestor, clock, requests } = setup(() => ({ statusCode: 500, body: 'internal error' }));
    const err = await failure(settle(attestor.attest(PID, new AbortController().signal), clock));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(requests()).toBe(60);
    expect(err.message).toBe(
      `k8s: no pod list from the kubelet for container ${CID} of pod ${POD_UID} after 60 attempts over 29.5s: ` +
        'kubelet: GET https://node-a:10250/pods returned 500 (internal error)',
    );
    await attestor.close();
  });

  it('a slow kubelet (2 s per list) is not waited on for longer than about 30 s in total', async () => {
    const { attestor, clock, requests } = setup((_, c) => {
      c.advance(2000);
      return { statusCode: 200, body: podList(false) };
    });
    await settle(attestor.attest(PID, new AbortController().signal), clock);
    expect(requests()).toBe(15);
    expect(clock.now()).toBe(30_000);
    await attestor.close();
  });
});

describe('traced attestation (debug explain)', () => {
  /** A trace on the manual clock that keeps its steps. */
  function recorder(clock: ManualTimerClock): { trace: { now: () => number; step: (name: string, durationMs: number, detail?: Record<string, unknown>) => void }; steps: Array<{ name: string; durationMs: number; detail: Record<string, unknown> }> } {
    const steps: Array<{ name: string; durationMs: number; detail: Record<string, unknown> }> = [];
    return { steps, trace: { now: () => clock.now(), step: (name, durationMs, detail = {}) => void steps.push({ name, durationMs, detail }) } };
  }

  it('names the cgroup location, then a shared kubelet request with its attempts and the snapshot used', async () => {
    const { attestor, clock } = setup((n) => ({ statusCode: 200, body: podList(n >= 3) }));
    const { trace, steps } = recorder(clock);
    const values = await settle(attestor.attest(PID, new AbortController().signal, trace), clock);
    expect(values).toContain('container-name:web');
    expect(steps).toEqual([
      { name: 'cgroup', durationMs: 0, detail: { pod_uid: POD_UID, container_id: CID } },
      { name: 'kubelet lookup', durationMs: 1000, detail: { source: 'kubelet request (shared)', attempts: 3, generation: 3, age_ms: 0, match: 'found' } },
    ]);
    await attestor.close();
  });

  it('a caller answered from a fresh snapshot says so, with the snapshot age', async () => {
    const { attestor, clock } = setup(() => ({ statusCode: 200, body: podList(true) }));
    await settle(attestor.attest(PID, new AbortController().signal), clock);
    clock.advance(400);
    const { trace, steps } = recorder(clock);
    await attestor.attest(PID, new AbortController().signal, trace);
    expect(steps[1]).toEqual({ name: 'kubelet lookup', durationMs: 0, detail: { source: 'pod index (fresh snapshot)', generation: 1, age_ms: 400, match: 'found' } });
    await attestor.close();
  });

  it('a refusing kubelet: the step carries the error and the attestation fails as untraced', async () => {
    const { attestor, clock } = setup(() => ({ statusCode: 403, body: 'Forbidden (user=x, verb=get, resource=nodes, subresource(s)=[proxy])' }));
    const { trace, steps } = recorder(clock);
    const err = await failure(settle(attestor.attest(PID, new AbortController().signal, trace), clock));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(steps[1]).toMatchObject({ name: 'kubelet lookup', detail: { source: 'kubelet request (shared)', attempts: 1, last_error: err.message } });
    await attestor.close();
  });
});

describe('attestPod (debug explain -podUID)', () => {
  it.each([
    { name: 'a container by name: pod and container selectors', podUid: POD_UID, container: 'web', has: ['pod-uid:' + POD_UID, 'container-name:web'], lacks: [] },
    { name: 'no container named: pod-level selectors only', podUid: POD_UID, container: undefined, has: ['pod-uid:' + POD_UID, 'sa:web'], lacks: ['container-name:web'] },
  ])('$name', async ({ podUid, container, has, lacks }) => {
    const { attestor, clock } = setup(() => ({ statusCode: 200, body: podList(true) }));
    const values = await settle(attestor.attestPod!(podUid, container, new AbortController().signal), clock);
    for (const v of has) expect(values).toContain(v);
    for (const v of lacks) expect(values).not.toContain(v);
    await attestor.close();
  });

  it.each([
    { name: 'a pod not on this node', podUid: 'nope', container: undefined, message: 'k8s: pod nope is not in the kubelet pod list of this node' },
    { name: 'a container the pod does not have', podUid: POD_UID, container: 'db', message: 'k8s: pod demo/web has no container "db" in its status (it has: web)' },
  ])('NotFound for $name', async ({ podUid, container, message }) => {
    const { attestor, clock } = setup(() => ({ statusCode: 200, body: podList(true) }));
    const err = await failure(settle(attestor.attestPod!(podUid, container, new AbortController().signal), clock));
    expect([err.code, err.message]).toEqual([Code.NOT_FOUND, message]);
    await attestor.close();
  });
});
