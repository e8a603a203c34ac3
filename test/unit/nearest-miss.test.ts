import { describe, expect, it } from 'vitest';
import { describeNearMiss, explainSelectors, type ExplainableEntry } from '../../src/agent/explain/nearest-miss.ts';
import { parseSelector, type Selector } from '../../src/common/selector.ts';

const sel = (...texts: string[]): Selector[] =>
  texts.map((t) => {
    const p = parseSelector(t);
    if (!p.ok) throw new Error(p.error);
    return p.value;
  });
const entry = (id: string, spiffePath: string, selectors: string[], storeSvid = false): ExplainableEntry => ({
  id,
  spiffeId: `spiffe://example.org${spiffePath}`,
  selectors: sel(...selectors),
  storeSvid,
});

const POD = sel('k8s:ns:shop', 'k8s:sa:default', 'k8s:pod-label:app:web', 'k8s:pod-label:tier:front', 'k8s:container-name:web', 'unix:uid:1000');

describe('explainSelectors: matches', () => {
  it.each([
    { name: 'every selector present matches', entries: [entry('a', '/web', ['k8s:ns:shop', 'k8s:sa:default'])], matched: ['a'] },
    { name: 'a duplicated selector in the entry still matches', entries: [entry('a', '/web', ['k8s:ns:shop', 'k8s:ns:shop'])], matched: ['a'] },
    { name: 'matches sort by SPIFFE ID then entry ID', entries: [entry('z', '/b', ['unix:uid:1000']), entry('y', '/a', ['k8s:ns:shop']), entry('x', '/b', ['k8s:ns:shop'])], matched: ['y', 'x', 'z'] },
    { name: 'one missing selector is no match', entries: [entry('a', '/api', ['k8s:ns:shop', 'k8s:sa:api'])], matched: [] },
  ])('$name', ({ entries, matched }) => {
    expect(explainSelectors(POD, entries).matched.map((e) => e.id)).toEqual(matched);
  });

  it('a store_svid entry that matches is reported apart: it gives no identity', () => {
    const out = explainSelectors(POD, [entry('s', '/store', ['k8s:ns:shop'], true)]);
    expect([out.matched, out.matchedStoreSvid.map((e) => e.id), out.nearMisses]).toEqual([[], ['s'], []]);
  });
});

describe('explainSelectors: near misses', () => {
  it.each([
    {
      name: 'a different service account is named with the one found',
      entries: [entry('a', '/api', ['k8s:ns:shop', 'k8s:sa:api'])],
      want: [{ id: 'a', missing: [{ wanted: 'k8s:sa:api', found: ['k8s:sa:default'] }], present: 1 }],
    },
    {
      name: 'another uid: the unix:uid near miss, even with nothing else in common',
      entries: [entry('u', '/svc', ['unix:uid:1001'])],
      want: [{ id: 'u', missing: [{ wanted: 'unix:uid:1001', found: ['unix:uid:1000'] }], present: 0 }],
    },
    {
      name: 'a label compares with labels of the same key only',
      entries: [entry('l', '/web', ['k8s:ns:shop', 'k8s:pod-label:app:api'])],
      want: [{ id: 'l', missing: [{ wanted: 'k8s:pod-label:app:api', found: ['k8s:pod-label:app:web'] }], present: 1 }],
    },
    {
      name: 'a label key the caller lacks falls back to its other labels',
      entries: [entry('l', '/web', ['k8s:ns:shop', 'k8s:pod-label:team:blue'])],
      want: [{ id: 'l', missing: [{ wanted: 'k8s:pod-label:team:blue', found: ['k8s:pod-label:app:web', 'k8s:pod-label:tier:front'] }], present: 1 }],
    },
    {
      name: 'a selector type the caller has none of: nothing found',
      entries: [entry('d', '/docker', ['k8s:ns:shop', 'docker:label:app:web'])],
      want: [{ id: 'd', missing: [{ wanted: 'docker:label:app:web', found: [] }], present: 1 }],
    },
    {
      name: 'two missing selectors are listed; three are not',
      entries: [entry('two', '/two', ['k8s:ns:other', 'k8s:sa:api']), entry('three', '/three', ['k8s:ns:other', 'k8s:sa:api', 'unix:uid:0'])],
      want: [{ id: 'two', missing: [{ wanted: 'k8s:ns:other', found: ['k8s:ns:shop'] }, { wanted: 'k8s:sa:api', found: ['k8s:sa:default'] }], present: 0 }],
    },
    {
      name: 'store_svid entries are never near misses',
      entries: [entry('s', '/store', ['k8s:sa:api'], true)],
      want: [],
    },
  ])('$name', ({ entries, want }) => {
    const out = explainSelectors(POD, entries);
    expect(out.matched).toEqual([]);
    expect(out.nearMisses.map((m) => ({ id: m.entry.id, missing: m.missing, present: m.present }))).toEqual(want);
  });

  it('ranks fewer missing, then a same-kind difference, then more selectors present, then SPIFFE ID', () => {
    const out = explainSelectors(POD, [
      entry('two-missing', '/a', ['k8s:ns:shop', 'k8s:sa:x', 'k8s:container-name:x']),
      entry('lacks-type', '/b', ['k8s:ns:shop', 'k8s:sa:default', 'docker:label:x:y']),
      entry('specific', '/c', ['k8s:ns:shop', 'k8s:pod-label:app:web', 'k8s:sa:api']),
      entry('plain', '/d', ['k8s:ns:shop', 'k8s:sa:api']),
      entry('plain-too', '/c', ['k8s:ns:shop', 'k8s:sa:api2']),
    ]);
    expect(out.nearMisses.map((m) => m.entry.id)).toEqual(['specific', 'plain-too', 'plain', 'lacks-type', 'two-missing']);
  });

  it('lists at most `limit` and counts the rest', () => {
    const entries = Array.from({ length: 8 }, (_, i) => entry(`e${i}`, `/e${i}`, [`k8s:sa:sa${i}`]));
    const out = explainSelectors(POD, entries, { limit: 3 });
    expect([out.nearMisses.map((m) => m.entry.id), out.moreNearMisses]).toEqual([['e0', 'e1', 'e2'], 5]);
  });

  it('maxMissing widens or narrows what counts as near', () => {
    const entries = [entry('one', '/one', ['k8s:sa:api']), entry('two', '/two', ['k8s:sa:api', 'k8s:ns:x'])];
    expect(explainSelectors(POD, entries, { maxMissing: 1 }).nearMisses.map((m) => m.entry.id)).toEqual(['one']);
  });
});

describe('describeNearMiss', () => {
  it.each([
    { entries: [entry('a', '/api', ['k8s:ns:shop', 'k8s:sa:api'])], line: 'spiffe://example.org/api: k8s:sa:default found, entry wants k8s:sa:api' },
    { entries: [entry('d', '/d', ['k8s:ns:shop', 'docker:label:app:web'])], line: 'spiffe://example.org/d: no docker:label:app:… selector, entry wants docker:label:app:web' },
    {
      entries: [entry('t', '/t', ['k8s:ns:other', 'unix:uid:0'])],
      line: 'spiffe://example.org/t: k8s:ns:shop found, entry wants k8s:ns:other; unix:uid:1000 found, entry wants unix:uid:0',
    },
  ])('$line', ({ entries, line }) => {
    const [miss] = explainSelectors(POD, entries).nearMisses;
    expect(miss && describeNearMiss(miss)).toBe(line);
  });
});
