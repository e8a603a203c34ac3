import { describe, expect, it } from 'vitest';
import type { EntryInput } from '../../src/server/datastore/types.ts';
import {
  dnsNameError,
  entryValidationMessage,
  normalizeTrustDomain,
  validateEntry,
  wildcardOverlapError,
  workloadIdError,
} from '../../src/server/datastore/validate.ts';

const TD = 'example.org';
const base: EntryInput = {
  spiffeId: 'spiffe://example.org/workload',
  parentId: 'spiffe://example.org/spire/agent/join_token/abc',
  selectors: [{ type: 'unix', value: 'uid:1000' }],
};

describe('validateEntry', () => {
  const failures: { name: string; input: Partial<EntryInput>; phase: 'convert' | 'store'; error: string }[] = [
    { name: 'parent not a SPIFFE ID', input: { parentId: 'https://example.org/x' }, phase: 'convert', error: 'invalid parent ID: SPIFFE ID "https://example.org/x" must use the spiffe scheme' },
    { name: 'parent empty', input: { parentId: '' }, phase: 'convert', error: 'invalid parent ID: SPIFFE ID is empty' },
    { name: 'parent in another trust domain', input: { parentId: 'spiffe://other.org/agent' }, phase: 'convert', error: 'invalid parent ID: "spiffe://other.org/agent" is not a member of trust domain "example.org"' },
    { name: 'parent is the trust domain ID', input: { parentId: 'spiffe://example.org' }, phase: 'convert', error: 'invalid parent ID: "spiffe://example.org" is not a member of trust domain "example.org"; path is empty' },
    { name: 'spiffe ID malformed', input: { spiffeId: 'spiffe://Example.org/x' }, phase: 'convert', error: 'invalid spiffe ID: SPIFFE ID "spiffe://Example.org/x": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores' },
    { name: 'spiffe ID in another trust domain', input: { spiffeId: 'spiffe://other.org/w' }, phase: 'convert', error: 'invalid spiffe ID: "spiffe://other.org/w" is not a member of trust domain "example.org"' },
    { name: 'spiffe ID is the trust domain ID', input: { spiffeId: 'spiffe://example.org' }, phase: 'convert', error: 'invalid spiffe ID: "spiffe://example.org" is not a workload in trust domain "example.org"; path is empty' },
    { name: 'spiffe ID under /spire/', input: { spiffeId: 'spiffe://example.org/spire/agent/x' }, phase: 'convert', error: 'invalid spiffe ID: "spiffe://example.org/spire/agent/x" is not a workload in trust domain "example.org"; path is in the reserved namespace' },
    { name: 'spiffe ID is /spire', input: { spiffeId: 'spiffe://example.org/spire' }, phase: 'convert', error: 'invalid spiffe ID: "spiffe://example.org/spire" is not a workload in trust domain "example.org"; path is in the reserved namespace' },
    { name: 'bad DNS name', input: { dnsNames: ['ok.example', '-bad.example'] }, phase: 'convert', error: `invalid DNS name: idna error: label "-bad" starts or ends with '-'` },
    { name: 'DNS wildcard not first', input: { dnsNames: ['a.*.example'] }, phase: 'convert', error: 'invalid DNS name: wildcard must be first label' },
    { name: 'bad federated trust domain', input: { federatesWith: ['Bad TD'] }, phase: 'convert', error: 'invalid federated trust domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores' },
    { name: 'no selectors', input: { selectors: [] }, phase: 'convert', error: 'selector list is empty' },
    { name: 'selector without type', input: { selectors: [{ type: '', value: 'x' }] }, phase: 'convert', error: 'missing selector type' },
    { name: "selector type with ':'", input: { selectors: [{ type: 'k8s:ns', value: 'x' }] }, phase: 'convert', error: "selector type contains ':'" },
    { name: 'selector without value', input: { selectors: [{ type: 'unix', value: '' }] }, phase: 'convert', error: 'missing selector value' },
    { name: 'hint too long', input: { hint: 'h'.repeat(1025) }, phase: 'convert', error: 'hint is too long, max length is 1024 characters' },
    { name: 'store SVID with mixed selector types', input: { storeSvid: true, selectors: [{ type: 'unix', value: 'uid:1' }, { type: 'k8s', value: 'ns:a' }] }, phase: 'store', error: 'invalid registration entry: selector types must be the same when store SVID is enabled' },
    { name: 'entry ID too long', input: { id: 'a'.repeat(256) }, phase: 'store', error: 'invalid registration entry: entry ID too long' },
    { name: 'entry ID with bad characters', input: { id: 'a/b' }, phase: 'store', error: 'invalid registration entry: entry ID contains invalid characters' },
    { name: 'negative X.509 TTL', input: { x509SvidTtl: -1 }, phase: 'store', error: 'invalid registration entry: X509SvidTtl is not set' },
    { name: 'negative JWT TTL', input: { jwtSvidTtl: -1 }, phase: 'store', error: 'invalid registration entry: JwtSvidTtl is not set' },
    { name: 'fractional TTL', input: { x509SvidTtl: 1.5 }, phase: 'store', error: 'invalid registration entry: X509SvidTtl must be an integer' },
    { name: 'negative expiry', input: { expiresAt: -5 }, phase: 'store', error: 'invalid registration entry: expiry must be a non-negative integer' },
  ];
  for (const tc of failures) {
    it(`rejects: ${tc.name}`, () => {
      const result = validateEntry({ ...base, ...tc.input }, TD);
      expect(result).toEqual({ ok: false, phase: tc.phase, error: tc.error });
    });
  }

  it('checks the parent ID before the SPIFFE ID, as SPIRE does', () => {
    const result = validateEntry({ ...base, parentId: 'x', spiffeId: 'y' }, TD);
    expect(result.ok === false && result.error.startsWith('invalid parent ID')).toBe(true);
  });

  it('normalises selectors, federated trust domains and DNS names, filling defaults', () => {
    const result = validateEntry(
      {
        ...base,
        selectors: [
          { type: 'unix', value: 'uid:1000' },
          { type: 'k8s', value: 'ns:b' },
          { type: 'k8s', value: 'ns:a' },
          { type: 'unix', value: 'uid:1000' },
        ],
        federatesWith: ['spiffe://zeta.org', 'alpha.org', 'zeta.org'],
        dnsNames: ['b.example', 'a.example', 'b.example', '*.w.example'],
      },
      TD,
    );
    expect(result).toEqual({
      ok: true,
      value: {
        id: '',
        spiffeId: base.spiffeId,
        parentId: base.parentId,
        selectors: [
          { type: 'k8s', value: 'ns:a' },
          { type: 'k8s', value: 'ns:b' },
          { type: 'unix', value: 'uid:1000' },
        ],
        x509SvidTtl: 0,
        jwtSvidTtl: 0,
        federatesWith: ['alpha.org', 'zeta.org'],
        dnsNames: ['b.example', 'a.example', '*.w.example'],
        hint: '',
        admin: false,
        downstream: false,
        storeSvid: false,
        expiresAt: 0,
      },
    });
  });

  it('accepts a node alias (parented by the server ID) and a parent outside /spire', () => {
    expect(validateEntry({ ...base, parentId: 'spiffe://example.org/spire/server', spiffeId: 'spiffe://example.org/nodes/a' }, TD).ok).toBe(true);
    expect(validateEntry({ ...base, parentId: 'spiffe://example.org/workload/parent' }, TD).ok).toBe(true);
  });

  it('accepts a valid caller-chosen ID', () => {
    const result = validateEntry({ ...base, id: 'My_entry-1.0' }, TD);
    expect(result.ok && result.value.id).toBe('My_entry-1.0');
  });
});

describe('entryValidationMessage', () => {
  it('formats messages as SPIRE reports them', () => {
    expect(entryValidationMessage({ phase: 'convert', error: 'selector list is empty' }, 'create')).toBe(
      'failed to convert entry: selector list is empty',
    );
    expect(entryValidationMessage({ phase: 'store', error: 'invalid registration entry: X509SvidTtl is not set' }, 'update')).toBe(
      'failed to update entry: datastore-validation: invalid registration entry: X509SvidTtl is not set',
    );
  });
});

describe('normalizeTrustDomain', () => {
  const cases: { input: string; ok: boolean; value?: string }[] = [
    { input: 'example.org', ok: true, value: 'example.org' },
    { input: 'spiffe://example.org', ok: true, value: 'example.org' },
    { input: 'spiffe://example.org/path', ok: true, value: 'example.org' },
    { input: '', ok: false },
    { input: 'Example.org', ok: false },
    { input: 'https://example.org', ok: false },
  ];
  for (const tc of cases) {
    it(`${JSON.stringify(tc.input)} → ${tc.ok ? tc.value : 'error'}`, () => {
      const result = normalizeTrustDomain(tc.input);
      expect(result.ok).toBe(tc.ok);
      if (result.ok) expect(result.value).toBe(tc.value);
    });
  }
});

describe('dnsNameError', () => {
  const cases: { name: string; error?: string }[] = [
    { name: 'com' },
    { name: 'example.com' },
    { name: '*.example.com' },
    { name: 'xn--ls8h.org' },
    { name: 'a-hello.com' },
    { name: 'UPPER.example' },
    { name: '.', error: 'domain ends with dot' },
    { name: 'example.com.', error: 'domain ends with dot' },
    { name: '', error: 'empty or only whitespace' },
    { name: ' ', error: 'empty or only whitespace' },
    { name: '*.foo.*.bar', error: 'too many wildcards' },
    { name: 'foo.*.bar', error: 'wildcard must be first label' },
    { name: '💩.com', error: 'name must be ascii' },
    { name: 'a..b', error: 'idna error: empty label' },
    { name: 'under_score.com', error: `idna error: label "under_score" has characters other than letters, digits and '-'` },
    { name: `${'a'.repeat(64)}.com`, error: `idna error: label "${'a'.repeat(64)}" is longer than 63 characters` },
    { name: `${'a.'.repeat(127)}com`, error: 'idna error: domain name is longer than 253 characters' },
    { name: 'ab--cd.com', error: `idna error: label "ab--cd" has '--' in the third and fourth positions` },
  ];
  for (const tc of cases) {
    it(`${JSON.stringify(tc.name.slice(0, 40))} → ${tc.error ?? 'valid'}`, () => {
      expect(dnsNameError(tc.name)).toBe(tc.error);
    });
  }
});

describe('wildcardOverlapError and workloadIdError', () => {
  it.each([
    [['*.example.org', 'a.example.org'], 'name "a.example.org" overlaps with an existing wildcard name in the list: wildcard overlap'],
    [['*.example.org', 'a.b.example.org'], undefined],
    [['a.example.org', 'b.example.org'], undefined],
    [['*.example.org'], undefined],
  ])('%j → %s', (names, expected) => {
    expect(wildcardOverlapError(names)).toBe(expected);
  });
  it.each([
    ['spiffe://example.org/w', undefined],
    ['spiffe://other.org/w', '"spiffe://other.org/w" is not a member of trust domain "example.org"'],
    ['spiffe://example.org', '"spiffe://example.org" is not a workload in trust domain "example.org"; path is empty'],
    ['spiffe://example.org/spire', '"spiffe://example.org/spire" is not a workload in trust domain "example.org"; path is in the reserved namespace'],
  ])('%s → %s', (id, expected) => {
    expect(workloadIdError(id, 'example.org')).toBe(expected);
  });
});
