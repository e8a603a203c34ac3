import { describe, expect, it } from 'vitest';
import { explain, type ExplainSources } from '../../src/agent/explain/explain.ts';
import type { CachedEntry } from '../../src/agent/manager/entries.ts';
import type { AttestorReport } from '../../src/agent/workload-attestation/workload-attestor.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { parseSelector, selectorKey, type Selector } from '../../src/common/selector.ts';

const sel = (...texts: string[]): Selector[] =>
  texts.map((t) => {
    const p = parseSelector(t);
    if (!p.ok) throw new Error(p.error);
    return p.value;
  });

function entry(id: string, path: string, selectors: string[], extra: Partial<CachedEntry> = {}): CachedEntry {
  const s = sel(...selectors);
  return {
    id,
    spiffeId: `spiffe://example.org${path}`,
    selectors: s,
    selectorKeys: s.map(selectorKey),
    federatesWith: [],
    hint: '',
    x509SvidTtl: 0,
    jwtSvidTtl: 0,
    createdAt: 1,
    revisionNumber: 1,
    storeSvid: false,
    ...extra,
  };
}

const NOW = Date.parse('2026-12-06T08:00:00Z');

interface World {
  entries?: CachedEntry[];
  expiries?: Record<string, number>;
  serving?: boolean;
  reports?: AttestorReport[];
  podReports?: AttestorReport[];
  /** Start times the process shows on successive reads; a string is a read error. */
  starts?: Array<string>;
}

function sources(world: World): ExplainSources {
  const starts = [...(world.starts ?? ['100', '100'])];
  let t = 0;
  return {
    attestor: {
      attest: () => Promise.reject(new Error('explain must not use the untraced path')),
      explain: async () => world.reports ?? [{ plugin: 'unix', durationMs: 0.2, selectors: sel('unix:uid:1000'), steps: [] }],
      explainPod: async (podUid, container) =>
        world.podReports ??
        (podUid === 'uid-1'
          ? [{ plugin: 'k8s', durationMs: 1, selectors: sel('k8s:ns:shop', 'k8s:sa:default', ...(container === undefined ? [] : [`k8s:container-name:${container}`])), steps: [] }]
          : [{ plugin: 'k8s', durationMs: 1, error: { code: Code.NOT_FOUND, message: `k8s: pod ${podUid} is not in the kubelet pod list of this node` }, steps: [] }]),
    },
    manager: {
      serving: world.serving ?? true,
      matchableEntries: new Map((world.entries ?? []).map((e) => [e.id, e])),
      svidExpiry: (id) => world.expiries?.[id],
    },
    processFacts: () => {
      const next = starts.shift() ?? 'gone';
      return next.startsWith('gone') ? `could not read /proc/42: ENOENT` : { startTime: next, uid: 1000, gid: 1000 };
    },
    now: () => (t += 1),
    wallNow: () => NOW,
  };
}

const signal = new AbortController().signal;

describe('explain: the verdict the Workload API would give', () => {
  it.each<{ name: string; world: World; verdict: { code: Code; codeName: string; message: string } }>([
    {
      name: 'a matching entry with a cached SVID: OK',
      world: { entries: [entry('e1', '/web', ['unix:uid:1000'])], expiries: { e1: NOW + 3_600_000 } },
      verdict: { code: Code.OK, codeName: 'OK', message: '1 X509-SVID' },
    },
    {
      name: 'a matching entry not minted yet: OK once minted',
      world: { entries: [entry('e1', '/web', ['unix:uid:1000'])] },
      verdict: { code: Code.OK, codeName: 'OK', message: '1 X509-SVID; 1 not cached yet: the first answer waits until the agent has minted them' },
    },
    {
      name: 'an expired SVID is still served, and said to be',
      world: { entries: [entry('e1', '/web', ['unix:uid:1000']), entry('e2', '/web2', ['unix:uid:1000'])], expiries: { e1: NOW - 1, e2: NOW + 1 } },
      verdict: { code: Code.OK, codeName: 'OK', message: '2 X509-SVIDs; 1 expired and not rotated yet' },
    },
    {
      name: 'no entry matches: PermissionDenied "no identity issued", exactly',
      world: { entries: [entry('e1', '/web', ['unix:uid:1001'])] },
      verdict: { code: Code.PERMISSION_DENIED, codeName: 'PermissionDenied', message: 'no identity issued' },
    },
    {
      name: 'only a store_svid entry matches: still no identity',
      world: { entries: [entry('s1', '/store', ['unix:uid:1000'], { storeSvid: true })] },
      verdict: { code: Code.PERMISSION_DENIED, codeName: 'PermissionDenied', message: 'no identity issued' },
    },
    {
      name: 'an agent that has not synced: Unavailable',
      world: { serving: false, entries: [entry('e1', '/web', ['unix:uid:1000'])] },
      verdict: { code: Code.UNAVAILABLE, codeName: 'Unavailable', message: 'agent is not ready: it has not synchronized with the server yet' },
    },
    {
      name: 'every attestor failed: Unavailable "workload attestation failed"',
      world: { entries: [entry('e1', '/web', ['unix:uid:1000'])], reports: [{ plugin: 'unix', durationMs: 1, error: { code: Code.INTERNAL, message: 'unix: boom' }, steps: [] }] },
      verdict: { code: Code.UNAVAILABLE, codeName: 'Unavailable', message: 'workload attestation failed' },
    },
  ])('$name', async ({ world, verdict }) => {
    const report = await explain(sources(world), { pid: 42 }, signal);
    expect(report.verdict).toEqual(verdict);
  });
});

describe('explain: what it shows', () => {
  it('a process of another uid: its selectors, the unix:uid near miss, the pinning steps', async () => {
    const report = await explain(sources({ entries: [entry('e1', '/web', ['unix:uid:1001'], { hint: 'web', x509SvidTtl: 600 })] }), { pid: 42 }, signal);
    expect(report.selectors).toEqual(['unix:uid:1000']);
    expect(report.matched).toEqual([]);
    expect(report.nearMisses).toEqual([
      {
        entry: { entryId: 'e1', spiffeId: 'spiffe://example.org/web', hint: 'web', selectors: ['unix:uid:1001'], x509SvidTtl: 600, jwtSvidTtl: 0, svidExpiresAt: undefined },
        missing: [{ wanted: 'unix:uid:1001', found: ['unix:uid:1000'] }],
      },
    ]);
    expect(report.process).toEqual({
      uid: 1000,
      gid: 1000,
      steps: [
        { name: 'process', durationMs: 1, detail: { source: '/proc/42/stat', start_time: '100' } },
        { name: 'liveness check', durationMs: 1, detail: { same_process: true } },
      ],
    });
  });

  it('selectors given directly skip attestation and the process checks', async () => {
    const report = await explain(sources({ entries: [entry('e1', '/api', ['k8s:ns:shop', 'k8s:sa:api'])], expiries: { e1: NOW + 1000 } }), { selectors: sel('k8s:sa:api', 'k8s:ns:shop') }, signal);
    expect([report.pid, report.process, report.attestors, report.selectors]).toEqual([undefined, undefined, [], ['k8s:ns:shop', 'k8s:sa:api']]);
    expect(report.matched.map((e) => [e.entryId, e.svidExpiresAt])).toEqual([['e1', new Date(NOW + 1000).toISOString()]]);
  });

  it.each([
    { name: 'a PID that does not exist is NotFound', starts: ['gone'], message: 'process 42: could not read /proc/42: ENOENT' },
    { name: 'a process that exits during attestation is NotFound', starts: ['100', 'gone'], message: 'process 42 exited during attestation; its selectors are not explained' },
    { name: 'a PID reused during attestation is NotFound', starts: ['100', '200'], message: 'process 42 exited during attestation and its PID was reused; its selectors are not explained' },
  ])('$name', async ({ starts, message }) => {
    const err = await explain(sources({ starts }), { pid: 42 }, signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect([(err as ApiError).code, (err as ApiError).message]).toEqual([Code.NOT_FOUND, message]);
  });
});

describe('explain: a pod by UID', () => {
  const entries = [entry('api', '/api', ['k8s:ns:shop', 'k8s:sa:api']), entry('web', '/web', ['k8s:ns:shop', 'k8s:container-name:web'])];
  it('a container by name: its selectors, the k8s:sa near miss', async () => {
    const report = await explain(sources({ entries }), { podUid: 'uid-1', containerName: 'web' }, signal);
    expect(report.selectors).toEqual(['k8s:container-name:web', 'k8s:ns:shop', 'k8s:sa:default']);
    expect(report.matched.map((e) => e.entryId)).toEqual(['web']);
    expect(report.nearMisses.map((m) => [m.entry.entryId, m.missing])).toEqual([['api', [{ wanted: 'k8s:sa:api', found: ['k8s:sa:default'] }]]]);
  });

  it.each([
    { name: 'a pod not on this node is NotFound', world: {}, code: Code.NOT_FOUND, message: 'k8s: pod uid-2 is not in the kubelet pod list of this node' },
    { name: 'without a k8s attestor it says what is missing', world: { podReports: [] }, code: Code.FAILED_PRECONDITION, message: 'explaining a pod needs the k8s workload attestor; this agent has none configured' },
  ])('$name', async ({ world, code, message }) => {
    const err = await explain(sources(world), { podUid: 'uid-2' }, signal).catch((e: unknown) => e);
    expect([(err as ApiError).code, (err as ApiError).message]).toEqual([code, message]);
  });
});
