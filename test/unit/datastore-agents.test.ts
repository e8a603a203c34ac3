import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { openDatastore, type Datastore } from '../../src/server/datastore/datastore.ts';
import type { AttestedAgent, FederatedBundleInput } from '../../src/server/datastore/types.ts';

const TD = 'example.org';
const AGENT_ID = 'spiffe://example.org/spire/agent/k8s_psat/c1/node-uid-1';

let dir: string;
let path: string;
let clock: ManualClock;
let ds: Datastore;
const opened: Datastore[] = [];

function open(): Datastore {
  const store = openDatastore({ path, trustDomain: TD, clock });
  opened.push(store);
  return store;
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError');
}

function rawCount(table: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return Number(db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get()?.n);
  } finally {
    db.close();
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'datastore-agents-test-'));
  path = join(dir, 'datastore.sqlite3');
  clock = new ManualClock(Date.UTC(2026, 0, 1));
  ds = open();
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

const agent: AttestedAgent = {
  spiffeId: AGENT_ID,
  attestationType: 'k8s_psat',
  serialNumber: '0a1b',
  newSerialNumber: '',
  expiresAt: 1_800_000_000,
  banned: false,
  canReattest: true,
  selectors: [
    { type: 'k8s_psat', value: 'cluster:c1' },
    { type: 'k8s_psat', value: 'agent_ns:spire' },
    { type: 'k8s_psat', value: 'cluster:c1' },
  ],
};
const normalizedSelectors = [
  { type: 'k8s_psat', value: 'agent_ns:spire' },
  { type: 'k8s_psat', value: 'cluster:c1' },
];

describe('attested agents', () => {
  it('round-trips every field and survives a reopen', () => {
    const expected = { ...agent, selectors: normalizedSelectors };
    expect(ds.createAttestedAgent(agent)).toEqual(expected);
    expect(ds.getAttestedAgent(AGENT_ID)).toEqual(expected);
    expect(ds.listAttestedAgents()).toEqual([expected]);
    ds.close();
    const reopened = open();
    expect(reopened.getAttestedAgent(AGENT_ID)).toEqual(expected);
    expect(reopened.countAgents()).toBe(1);
  });

  it('rejects a second agent with the same ID and invalid input', () => {
    ds.createAttestedAgent(agent);
    const dup = apiError(() => ds.createAttestedAgent(agent));
    expect([dup.code, dup.message]).toEqual([Code.ALREADY_EXISTS, `datastore: agent "${AGENT_ID}" already exists`]);
    expect(apiError(() => ds.createAttestedAgent({ ...agent, spiffeId: 'not-an-id' })).code).toBe(Code.INVALID_ARGUMENT);
    expect(
      apiError(() => ds.createAttestedAgent({ ...agent, spiffeId: `${AGENT_ID}-2`, selectors: [{ type: 'a:b', value: 'c' }] })).message,
    ).toBe("datastore: invalid agent selectors: selector type contains ':'");
    expect(ds.countAgents()).toBe(1);
  });

  it('updates serials and selectors; unknown agents are NOT_FOUND', () => {
    ds.createAttestedAgent(agent);
    const renewed = ds.updateAgentSerials(AGENT_ID, { serialNumber: '0a1b', newSerialNumber: '0c0d', expiresAt: 1_800_003_600 });
    expect(renewed).toMatchObject({ serialNumber: '0a1b', newSerialNumber: '0c0d', expiresAt: 1_800_003_600, canReattest: true });
    expect(ds.updateAgentSerials(AGENT_ID, { serialNumber: '0c0d', newSerialNumber: '', expiresAt: 1_800_003_600, canReattest: false }))
      .toMatchObject({ serialNumber: '0c0d', newSerialNumber: '', canReattest: false });
    expect(ds.setAgentSelectors(AGENT_ID, [{ type: 'k8s_psat', value: 'cluster:c2' }]).selectors).toEqual([
      { type: 'k8s_psat', value: 'cluster:c2' },
    ]);
    expect(rawCount('agent_selectors')).toBe(1);
    for (const fn of [
      () => ds.updateAgentSerials('spiffe://example.org/spire/agent/x', { serialNumber: '1', newSerialNumber: '', expiresAt: 1 }),
      () => ds.setAgentSelectors('spiffe://example.org/spire/agent/x', []),
      () => ds.banAgent('spiffe://example.org/spire/agent/x'),
      () => ds.deleteAgent('spiffe://example.org/spire/agent/x'),
    ]) {
      const err = apiError(fn);
      expect([err.code, err.message]).toEqual([Code.NOT_FOUND, 'agent not found']);
    }
  });

  it('bans an agent by clearing its serials, and keeps it banned until evicted', () => {
    ds.createAttestedAgent({ ...agent, newSerialNumber: '0c0d' });
    const banned = ds.banAgent(AGENT_ID);
    expect(banned).toMatchObject({ banned: true, serialNumber: '', newSerialNumber: '' });
    const err = apiError(() => ds.updateAgentSerials(AGENT_ID, { serialNumber: '99', newSerialNumber: '', expiresAt: 1 }));
    expect([err.code, err.message]).toEqual([Code.FAILED_PRECONDITION, 'datastore: agent is banned']);
    expect(ds.listAttestedAgents({ byBanned: true }).map((a) => a.spiffeId)).toEqual([AGENT_ID]);
    expect(ds.listAttestedAgents({ byBanned: false })).toEqual([]);
    // Eviction removes the agent and its selectors, so it may attest again.
    expect(ds.deleteAgent(AGENT_ID).banned).toBe(true);
    expect(ds.getAttestedAgent(AGENT_ID)).toBeUndefined();
    expect(rawCount('agent_selectors')).toBe(0);
    expect(ds.createAttestedAgent(agent).banned).toBe(false);
  });

  it('filters agents by attestation type and re-attestability', () => {
    ds.createAttestedAgent(agent);
    ds.createAttestedAgent({ ...agent, spiffeId: 'spiffe://example.org/spire/agent/join_token/t', attestationType: 'join_token', canReattest: false, selectors: [] });
    expect(ds.listAttestedAgents({ byAttestationType: 'join_token' }).map((a) => a.attestationType)).toEqual(['join_token']);
    expect(ds.listAttestedAgents({ byCanReattest: true }).map((a) => a.spiffeId)).toEqual([AGENT_ID]);
    expect(ds.countAgents()).toBe(2);
  });
});

describe('join tokens', () => {
  it('works exactly once: a second consume is unknown', () => {
    ds.createJoinToken({ token: 'tok-1', expiresAt: 2000 });
    expect(ds.consumeJoinToken('tok-1', 1000)).toBe('ok');
    expect(ds.consumeJoinToken('tok-1', 1000)).toBe('unknown');
  });

  it('reports an expired token as expired and deletes it', () => {
    ds.createJoinToken({ token: 'tok-2', expiresAt: 1000 });
    expect(ds.consumeJoinToken('tok-2', 1001)).toBe('expired');
    expect(ds.consumeJoinToken('tok-2', 500)).toBe('unknown');
  });

  it('treats a token as valid up to and including its expiry second (SPIRE: expiry before now)', () => {
    ds.createJoinToken({ token: 'tok-3', expiresAt: 1000 });
    expect(ds.consumeJoinToken('tok-3', 1000)).toBe('ok');
  });

  it('defaults "now" to the clock', () => {
    const now = Date.UTC(2026, 0, 1) / 1000;
    ds.createJoinToken({ token: 'fresh', expiresAt: now + 60 });
    ds.createJoinToken({ token: 'stale', expiresAt: now - 60 });
    expect(ds.consumeJoinToken('fresh')).toBe('ok');
    expect(ds.consumeJoinToken('stale')).toBe('expired');
  });

  it('rejects duplicates and empty tokens; never stores the token itself', () => {
    ds.createJoinToken({ token: 'secret-token-value', expiresAt: 5000 });
    const dup = apiError(() => ds.createJoinToken({ token: 'secret-token-value', expiresAt: 9000 }));
    expect([dup.code, dup.message]).toEqual([Code.ALREADY_EXISTS, 'datastore: join token already exists']);
    expect(apiError(() => ds.createJoinToken({ token: '', expiresAt: 5000 })).code).toBe(Code.INVALID_ARGUMENT);
    ds.close();
    expect(readFileSync(path).includes('secret-token-value')).toBe(false);
  });

  it('prunes tokens that expired before now', () => {
    ds.createJoinToken({ token: 'a', expiresAt: 100 });
    ds.createJoinToken({ token: 'b', expiresAt: 200 });
    ds.createJoinToken({ token: 'c', expiresAt: 300 });
    expect(ds.pruneJoinTokens(200)).toBe(1);
    expect(ds.consumeJoinToken('a', 0)).toBe('unknown');
    expect(ds.consumeJoinToken('b', 0)).toBe('ok');
  });
});

describe('federated bundles', () => {
  const bundle: FederatedBundleInput = {
    trustDomain: 'spiffe://other.org',
    x509Authorities: [Buffer.from([0x30, 0x82, 0x01]), Buffer.from([0x30, 0x03])],
    jwtAuthorities: [{ keyId: 'kid-1', publicKey: Buffer.from([1, 2, 3]), expiresAt: 1_900_000_000 }],
    refreshHint: 300,
  };

  it('upserts, normalising the trust domain and counting content changes', () => {
    const first = ds.setFederatedBundle(bundle);
    expect(first).toEqual({ ...bundle, trustDomain: 'other.org', sequenceNumber: 1 });
    expect(ds.setFederatedBundle({ ...bundle, trustDomain: 'other.org' }).sequenceNumber).toBe(1);
    expect(ds.setFederatedBundle({ ...bundle, refreshHint: 60 }).sequenceNumber).toBe(2);
    expect(ds.setFederatedBundle({ ...bundle, refreshHint: 60, jwtAuthorities: [] }).sequenceNumber).toBe(3);
    expect(ds.getFederatedBundle('other.org')).toEqual({ ...bundle, trustDomain: 'other.org', refreshHint: 60, jwtAuthorities: [], sequenceNumber: 3 });
    ds.close();
    expect(open().listFederatedBundles().map((b) => [b.trustDomain, b.sequenceNumber])).toEqual([['other.org', 3]]);
  });

  it("stores a writer's sequence number as given, 0 included, as SPIRE does (bundle set of a PEM file sends 0)", () => {
    expect(ds.setFederatedBundle({ ...bundle, sequenceNumber: 0 }).sequenceNumber).toBe(0);
    expect(ds.setFederatedBundle({ ...bundle, sequenceNumber: 0, refreshHint: 60 }).sequenceNumber).toBe(0);
    expect(ds.setFederatedBundle({ ...bundle, sequenceNumber: 7, refreshHint: 60 }).sequenceNumber).toBe(7);
    expect(ds.setFederatedBundle({ ...bundle, sequenceNumber: 3 }).sequenceNumber).toBe(3);
    expect(ds.getFederatedBundle('other.org')?.sequenceNumber).toBe(3);
    // Without one, content changes are numbered from the stored value.
    expect(ds.setFederatedBundle({ ...bundle, refreshHint: 5 }).sequenceNumber).toBe(4);
    expect(apiError(() => ds.setFederatedBundle({ ...bundle, sequenceNumber: -1 })).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('rejects the server trust domain and invalid names', () => {
    expect(apiError(() => ds.setFederatedBundle({ ...bundle, trustDomain: TD })).code).toBe(Code.INVALID_ARGUMENT);
    expect(apiError(() => ds.setFederatedBundle({ ...bundle, trustDomain: 'Not Valid' })).code).toBe(Code.INVALID_ARGUMENT);
    expect(ds.listFederatedBundles()).toEqual([]);
  });

  describe('delete modes', () => {
    let entryId: string;
    beforeEach(() => {
      ds.setFederatedBundle(bundle);
      entryId = ds.createEntry({
        spiffeId: 'spiffe://example.org/w',
        parentId: 'spiffe://example.org/spire/agent/x',
        selectors: [{ type: 'unix', value: 'uid:1' }],
        federatesWith: ['other.org'],
      }).id;
    });

    it('restrict (default) refuses while entries federate with it', () => {
      const err = apiError(() => ds.deleteFederatedBundle('other.org'));
      expect([err.code, err.message]).toEqual([Code.FAILED_PRECONDITION, 'datastore: cannot delete bundle; federated with 1 registration entries']);
      expect(ds.getFederatedBundle('other.org')).toBeDefined();
    });

    it('delete removes those entries', () => {
      ds.deleteFederatedBundle('spiffe://other.org', 'delete');
      expect(ds.getFederatedBundle('other.org')).toBeUndefined();
      expect(ds.getEntry(entryId)).toBeUndefined();
      expect(rawCount('entry_selectors')).toBe(0);
    });

    it('dissociate removes the trust domain from them and bumps their revision', () => {
      ds.deleteFederatedBundle('other.org', 'dissociate');
      expect(ds.getEntry(entryId)).toMatchObject({ federatesWith: [], revisionNumber: 1 });
    });

    it('an unknown bundle is NOT_FOUND', () => {
      const err = apiError(() => ds.deleteFederatedBundle('nope.org'));
      expect([err.code, err.message]).toEqual([Code.NOT_FOUND, 'bundle not found']);
    });
  });
});
