/**
 * What a sync hands the agent's cache manager, built for tests and benches: registration
 * entries from the server's Entry shape, and a trust domain bundle from a real CA. Entries and
 * bundles are in trust domain `example.org` unless told otherwise.
 */
import type { CertificateAuthority } from '../../src/server/ca/index.ts';
import type { Selector } from '../../src/common/selector.ts';
import { toCachedEntry, type CachedEntry } from '../../src/agent/manager/entries.ts';
import { toTrustDomainBundle, type TrustDomainBundle } from '../../src/agent/manager/bundles.ts';
import type { Entry__Output } from '../../src/gen/spire/api/types/Entry.ts';

const TD = 'example.org';

/** Selectors from `type:value` strings, split at the first ':' (`unix:uid:1`, `k8s:ns:default`). */
export function sel(...texts: string[]): Selector[] {
  return texts.map((x) => ({ type: x.split(':')[0] as string, value: x.slice(x.indexOf(':') + 1) }));
}

/**
 * Converts a server Entry with `spiffe://example.org<path>` and `selectors` (as `type:value`)
 * to a cache entry; `extra` overrides any other field (hint, revision_number, …). Throws if
 * the entry is refused.
 */
export function cachedEntry(id: string, path: string, selectors: string[], extra: Partial<Entry__Output> = {}): CachedEntry {
  const e = toCachedEntry({
    id,
    spiffe_id: { trust_domain: TD, path },
    parent_id: null,
    selectors: sel(...selectors),
    x509_svid_ttl: 0,
    jwt_svid_ttl: 0,
    federates_with: [],
    admin: false,
    downstream: false,
    expires_at: 0,
    dns_names: [],
    revision_number: 0,
    store_svid: false,
    hint: '',
    created_at: 1000,
    ...extra,
  });
  if (typeof e === 'string') throw new Error(e);
  return e;
}

/** The CA's current bundle (X.509 roots and JWT keys, none tainted) as a sync delivers it. */
export function bundleOf(authority: CertificateAuthority, trustDomain = TD): TrustDomainBundle {
  const b = authority.bundle();
  return toTrustDomainBundle({
    trust_domain: trustDomain,
    x509_authorities: b.x509Authorities.map((asn1) => ({ asn1, tainted: false })),
    jwt_authorities: b.jwtAuthorities.map((k) => ({ public_key: k.publicKey, key_id: k.keyId, expires_at: k.expiresAt, tainted: false })),
    refresh_hint: 0,
    sequence_number: b.sequenceNumber,
    wit_authorities: [],
  });
}
