import { describe, expect, it } from 'vitest';
import {
  authorizedEntries,
  buildEntryIndex,
  isNodeAlias,
  matchingNodeAliases,
} from '../../src/server/authorized-entries.ts';
import type { RegistrationEntry, Selector } from '../../src/server/datastore/types.ts';

const TD = 'spiffe://example.org';
const SERVER = `${TD}/spire/server`;
const AGENT = `${TD}/spire/agent/k8s_psat/c1/node-1`;
const OTHER_AGENT = `${TD}/spire/agent/k8s_psat/c1/node-2`;

function sel(...pairs: string[]): Selector[] {
  return pairs.map((p) => {
    const i = p.indexOf(':');
    return { type: p.slice(0, i), value: p.slice(i + 1) };
  });
}

function e(id: string, parentId: string, spiffeId: string, selectors: Selector[] = sel('unix:uid:1')): RegistrationEntry {
  return {
    id,
    spiffeId,
    parentId,
    selectors,
    x509SvidTtl: 0,
    jwtSvidTtl: 0,
    federatesWith: [],
    dnsNames: [],
    hint: '',
    admin: false,
    downstream: false,
    storeSvid: false,
    expiresAt: 0,
    revisionNumber: 0,
    createdAt: 0,
  };
}

const NODE_SELECTORS = sel('k8s_psat:cluster:c1', 'k8s_psat:agent_ns:spire', 'k8s_psat:agent_node_name:node-1');

describe('authorizedEntries', () => {
  const cases: {
    name: string;
    entries: RegistrationEntry[];
    agentSelectors?: Selector[];
    expected: string[];
  }[] = [
    {
      name: 'direct children of the agent',
      entries: [e('a', AGENT, `${TD}/w/a`), e('b', AGENT, `${TD}/w/b`)],
      expected: ['a', 'b'],
    },
    {
      name: 'nested grandchildren, transitively',
      entries: [
        e('child', AGENT, `${TD}/w/child`),
        e('grandchild', `${TD}/w/child`, `${TD}/w/grandchild`),
        e('great', `${TD}/w/grandchild`, `${TD}/w/great`),
      ],
      expected: ['child', 'grandchild', 'great'],
    },
    {
      name: 'entries parented by another agent are excluded',
      entries: [e('mine', AGENT, `${TD}/w/mine`), e('theirs', OTHER_AGENT, `${TD}/w/theirs`), e('theirs-child', `${TD}/w/theirs`, `${TD}/w/tc`)],
      expected: ['mine'],
    },
    {
      name: 'node alias whose selectors are a subset of the node selectors: its descendants, not itself',
      entries: [
        e('alias', SERVER, `${TD}/cluster/c1`, sel('k8s_psat:cluster:c1')),
        e('via-alias', `${TD}/cluster/c1`, `${TD}/w/via-alias`),
        e('via-alias-child', `${TD}/w/via-alias`, `${TD}/w/via-alias-child`),
      ],
      expected: ['via-alias', 'via-alias-child'],
    },
    {
      name: 'node alias with several selectors, all held by the agent',
      entries: [
        e('alias', SERVER, `${TD}/ns/spire`, sel('k8s_psat:cluster:c1', 'k8s_psat:agent_ns:spire')),
        e('via-alias', `${TD}/ns/spire`, `${TD}/w/x`),
      ],
      expected: ['via-alias'],
    },
    {
      name: 'node alias NOT matched when it needs a selector the agent lacks',
      entries: [
        e('alias', SERVER, `${TD}/cluster/c1-gpu`, sel('k8s_psat:cluster:c1', 'k8s_psat:agent_node_label:gpu:true')),
        e('via-alias', `${TD}/cluster/c1-gpu`, `${TD}/w/gpu-job`),
      ],
      expected: [],
    },
    {
      name: 'an agent without node selectors gets no aliases',
      entries: [e('alias', SERVER, `${TD}/cluster/c1`, sel('k8s_psat:cluster:c1')), e('via-alias', `${TD}/cluster/c1`, `${TD}/w/x`)],
      agentSelectors: [],
      expected: [],
    },
    {
      name: 'cycles terminate and list each entry once',
      entries: [
        e('a', AGENT, `${TD}/w/a`),
        e('b', `${TD}/w/a`, `${TD}/w/b`),
        e('c', `${TD}/w/b`, `${TD}/w/a`),
        e('self', `${TD}/w/self`, `${TD}/w/self`),
      ],
      expected: ['a', 'b', 'c'],
    },
    {
      name: 'an entry reachable both directly and through an alias appears once',
      entries: [
        e('alias', SERVER, `${TD}/cluster/c1`, sel('k8s_psat:cluster:c1')),
        e('direct', AGENT, `${TD}/shared`),
        e('shared-child', `${TD}/shared`, `${TD}/w/shared-child`),
        e('alias-child', `${TD}/cluster/c1`, `${TD}/shared`),
      ],
      expected: ['alias-child', 'direct', 'shared-child'],
    },
    {
      name: 'the agent ID in another trust domain does not match',
      entries: [e('x', 'spiffe://other.org/spire/agent/k8s_psat/c1/node-1', 'spiffe://other.org/w')],
      expected: [],
    },
  ];

  for (const tc of cases) {
    it(tc.name, () => {
      const index = buildEntryIndex(tc.entries);
      const result = authorizedEntries(index, AGENT, tc.agentSelectors ?? NODE_SELECTORS);
      const ids = result.map((r) => r.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.sort()).toEqual([...tc.expected].sort());
    });
  }

  it('returns the alias entries too when asked', () => {
    const index = buildEntryIndex([
      e('alias', SERVER, `${TD}/cluster/c1`, sel('k8s_psat:cluster:c1')),
      e('via-alias', `${TD}/cluster/c1`, `${TD}/w/via-alias`),
    ]);
    const ids = authorizedEntries(index, AGENT, NODE_SELECTORS, { includeNodeAliases: true }).map((r) => r.id);
    expect(ids.sort()).toEqual(['alias', 'via-alias']);
  });

  it('handles a chain deeper than the call stack would allow', () => {
    const entries: RegistrationEntry[] = [];
    let parent = AGENT;
    for (let i = 0; i < 20_000; i++) {
      const id = `${TD}/chain/${i}`;
      entries.push(e(`c${i}`, parent, id));
      parent = id;
    }
    expect(authorizedEntries(buildEntryIndex(entries), AGENT, []).length).toBe(20_000);
  });
});

describe('matchingNodeAliases and isNodeAlias', () => {
  it('finds each matching alias once, whatever the number of shared selectors', () => {
    const index = buildEntryIndex([
      e('two', SERVER, `${TD}/a`, sel('k8s_psat:cluster:c1', 'k8s_psat:agent_ns:spire')),
      e('one', SERVER, `${TD}/b`, sel('k8s_psat:cluster:c1')),
      e('miss', SERVER, `${TD}/c`, sel('k8s_psat:cluster:c2')),
    ]);
    expect(matchingNodeAliases(index, NODE_SELECTORS).map((a) => a.id).sort()).toEqual(['one', 'two']);
  });

  it('recognises only the server ID as an alias parent', () => {
    expect(isNodeAlias(e('x', SERVER, `${TD}/a`))).toBe(true);
    expect(isNodeAlias(e('x', `${SERVER}/sub`, `${TD}/a`))).toBe(false);
    expect(isNodeAlias(e('x', `${TD}/spire/servers`, `${TD}/a`))).toBe(false);
    expect(isNodeAlias(e('x', AGENT, `${TD}/a`))).toBe(false);
  });
});
