import { describe, expect, it } from 'vitest';
import { Code } from '../../../src/common/errors.ts';
import { WorkloadApiService } from '../../../src/common/proto.ts';
import {
  encodedJwtBundles,
  encodedX509Bundles,
  federatedTrustDomains,
  jwtBundlesResponse,
  x509BundlesResponse,
} from '../../../src/agent/workload-api/bundle-responses.ts';
import { encodedX509SvidResponse, x509SvidResponse } from '../../../src/agent/workload-api/x509-svid-response.ts';
import { encodeResponse, withPassthroughSerializers } from '../../../src/agent/workload-api/encode.ts';
import { DEFAULT_CLIENT_RECEIVE_LIMIT } from '../../../src/agent/workload-api/large-response.ts';
import type { WorkloadState } from '../../../src/agent/manager/workload-state.ts';
import { identity, snapshot } from '../../support/workload-api-fixtures.ts';

const TD = 'example.org';
const bundles = snapshot(TD, {
  x509: new Map([
    [TD, Buffer.from('own')],
    ['a.org', Buffer.from('a-roots')],
    ['b.org', Buffer.from('b-roots')],
  ]),
  jwks: new Map([
    [TD, Buffer.from('{"keys":[{"kid":"k1"}]}')],
    ['a.org', Buffer.alloc(0)],
  ]),
});

function state(...identities: ReturnType<typeof identity>[]): WorkloadState {
  return { identities, bundles };
}

describe('federatedTrustDomains', () => {
  it('collects names with or without the spiffe:// prefix, sorted, without the own trust domain', () => {
    const ids = [identity('1', { federatesWith: ['spiffe://b.org', 'a.org'] }), identity('2', { federatesWith: ['b.org', TD] })];
    expect(federatedTrustDomains(ids, TD)).toEqual(['a.org', 'b.org']);
  });
});

describe('X509SVIDResponse', () => {
  it('carries own roots per SVID and only the federated bundles the agent knows', () => {
    const res = x509SvidResponse(state(identity('e1', { federatesWith: ['a.org', 'unknown.org'] }), identity('e2')));
    expect(res.svids?.map((s) => [s.spiffe_id, String(s.bundle)])).toEqual([
      [`spiffe://${TD}/e1`, 'own'],
      [`spiffe://${TD}/e2`, 'own'],
    ]);
    expect(Object.keys(res.federated_bundles ?? {})).toEqual(['spiffe://a.org']);
  });

  it('keeps the federations of an entry dropped by the hint filter, as SPIRE does', () => {
    const res = x509SvidResponse(
      state(identity('e1', { hint: 'h', createdAt: 1 }), identity('e2', { hint: 'h', createdAt: 2, federatesWith: ['b.org'] })),
    );
    expect(res.svids?.map((s) => s.spiffe_id)).toEqual([`spiffe://${TD}/e1`]);
    expect(Object.keys(res.federated_bundles ?? {})).toEqual(['spiffe://b.org']);
  });

  it('is PermissionDenied "no identity issued" without identities', () => {
    expect(() => x509SvidResponse(state())).toThrow(expect.objectContaining({ code: Code.PERMISSION_DENIED, message: 'no identity issued' }));
    expect(encodedX509SvidResponse(state())).toMatchObject({ ok: false, error: { code: Code.PERMISSION_DENIED } });
  });

  it('serializes once per state object', () => {
    const s = state(identity('e1'));
    const first = encodedX509SvidResponse(s);
    expect(encodedX509SvidResponse(s)).toBe(first);
    expect(encodedX509SvidResponse(state(identity('e1')))).not.toBe(first);
    if (!first.ok) throw new Error('expected bytes');
    const decoded = WorkloadApiService.FetchX509SVID.responseDeserialize(first.bytes);
    expect(decoded.svids[0]?.x509_svid.toString()).toBe('chain-e1');
  });
});

describe('bundle responses', () => {
  it.each([
    { name: 'with an identity', identities: [identity('e1', { federatesWith: ['a.org', 'b.org'] })], keys: [`spiffe://${TD}`, 'spiffe://a.org', 'spiffe://b.org'] },
    { name: 'without an identity (own trust domain only)', identities: [], keys: [`spiffe://${TD}`] },
  ])('X509 bundles $name', ({ identities, keys }) => {
    expect(Object.keys(x509BundlesResponse({ identities, bundles }).bundles ?? {})).toEqual(keys);
  });

  it('JWT bundles never carry empty bytes: a trust domain without JWT keys gets {"keys":[]}', () => {
    const res = jwtBundlesResponse(state(identity('e1', { federatesWith: ['a.org', 'b.org'] })));
    expect(Object.fromEntries(Object.entries(res.bundles ?? {}).map(([k, v]) => [k, String(v)]))).toEqual({
      [`spiffe://${TD}`]: '{"keys":[{"kid":"k1"}]}',
      'spiffe://a.org': '{"keys":[]}',
      'spiffe://b.org': '{"keys":[]}',
    });
  });

  it('serializes equal content to equal bytes (how streams detect "unchanged")', () => {
    const a = state(identity('e1', { federatesWith: ['b.org', 'a.org'] }));
    const b = state(identity('e2', { federatesWith: ['a.org', 'b.org'] }));
    expect(encodedX509Bundles(a).equals(encodedX509Bundles(b))).toBe(true);
    expect(encodedJwtBundles(a).equals(encodedJwtBundles(b))).toBe(true);
    expect(encodedJwtBundles(a)).toBe(encodedJwtBundles(a));
  });
});

describe('encoding', () => {
  it('encodes responses over 4 MiB (never refuses them for their size)', () => {
    const big = { svids: [{ spiffe_id: 'spiffe://x/y', x509_svid: Buffer.alloc(DEFAULT_CLIENT_RECEIVE_LIMIT) }] };
    const bytes = encodeResponse(WorkloadApiService.FetchX509SVID.responseSerialize, big);
    expect(bytes.length).toBeGreaterThan(DEFAULT_CLIENT_RECEIVE_LIMIT);
    expect(WorkloadApiService.FetchX509SVID.responseDeserialize(bytes).svids).toHaveLength(1);
  });

  it('encodes a state with 5,000 SVIDs over 4 MiB once, with its SVID count', () => {
    const many = state(
      ...Array.from({ length: 5_000 }, (_, i) =>
        identity(`e${String(i).padStart(4, '0')}`, { spiffeId: `spiffe://${TD}/w/${i}`, certChain: Buffer.alloc(1_000, 1), privateKey: Buffer.alloc(138, 2) }),
      ),
    );
    const outcome = encodedX509SvidResponse(many);
    if (!outcome.ok) throw outcome.error;
    expect(outcome.svids).toBe(5_000);
    expect(outcome.bytes.length).toBeGreaterThan(DEFAULT_CLIENT_RECEIVE_LIMIT);
    expect(encodedX509SvidResponse(many)).toBe(outcome);
  });

  it('passes pre-encoded bytes through the service serializers and serializes objects as before', () => {
    const service = withPassthroughSerializers(WorkloadApiService);
    const bytes = Buffer.from([1, 2, 3]);
    const method = service['FetchJWTBundles'];
    expect(method?.responseSerialize(bytes)).toBe(bytes);
    const obj = { bundles: { 'spiffe://x': Buffer.from('{}') } };
    expect(method?.responseSerialize(obj).equals(WorkloadApiService.FetchJWTBundles.responseSerialize(obj))).toBe(true);
  });
});
