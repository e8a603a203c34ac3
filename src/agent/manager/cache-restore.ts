/**
 * Turns a decoded workload cache file into what the cache manager can serve, and back.
 * Pure: the time and the trusted roots are arguments.
 *
 * A file is refused as a whole when it belongs to another trust domain or another agent
 * identity, or lacks the own bundle. Single SVIDs are left out when their entry is
 * malformed, their leaf does not name the entry's SPIFFE ID, they have expired, or they
 * are not signed up to the agent's stored server bundle (the roots it trusts the server
 * with), so nothing is served that the server's CA did not issue. One leaf per issuer is
 * checked by signature, the others by issuer name and key ID (ChainVerifier
 * `first-per-issuer`): the file is integrity-checked and was written from SVIDs the server
 * issued, so what is in question is whether the stored bundle still vouches for their CA.
 */
import { readCertificate, type CertificateInfo } from '../../common/cert-reader.ts';
import { ChainVerifier } from '../../common/chain-verify.ts';
import { splitConcatenated } from '../../common/der.ts';
import { parseSpiffeId, type Parsed } from '../../common/spiffe-id.ts';
import type { CacheFileContent, StoredBundle, StoredSvid } from './cache-file.ts';
import type { PersistableCache, RestoredSvid } from './cache-manager.ts';
import { toCachedEntry, type CachedEntry } from './entries.ts';
import { trustDomainBundleOf, type TrustDomainBundle } from './bundles.ts';

/** What a restored file must match. */
export interface RestoreExpectations {
  readonly trustDomain: string;
  /** The SPIFFE ID of the agent's stored identity. */
  readonly agentId: string;
  /** The stored server bundle (DER roots) the SVIDs must chain to. */
  readonly roots: readonly Buffer[];
  /** Clock milliseconds. */
  readonly now: number;
}

/** The servable part of a file, and how many SVIDs were left out and why. */
export interface RestoredContent {
  readonly svids: RestoredSvid[];
  readonly own: TrustDomainBundle;
  readonly federated: Map<string, TrustDomainBundle>;
  /** The roots the SVIDs were verified against, concatenated. */
  readonly verifiedWith: Buffer;
  readonly skipped: { expired: number; unverified: number; malformed: number };
}

function storedEntry(s: StoredSvid): CachedEntry | string {
  const id = parseSpiffeId(s.spiffeId);
  if (!id.ok) return id.error;
  return toCachedEntry({
    id: s.entryId,
    spiffe_id: { trust_domain: id.value.trustDomain, path: id.value.path },
    parent_id: null,
    selectors: s.selectors.map((sel) => ({ type: sel.type, value: sel.value })),
    x509_svid_ttl: 0,
    federates_with: [...s.federatesWith],
    admin: false,
    downstream: false,
    expires_at: 0,
    dns_names: [],
    revision_number: s.revisionNumber,
    store_svid: false,
    jwt_svid_ttl: 0,
    hint: s.hint,
    created_at: s.createdAt,
  });
}

/** Checks a decoded file against the agent's stored identity and keeps what may be served. */
export function restoreContent(file: CacheFileContent, expect: RestoreExpectations): Parsed<RestoredContent> {
  if (file.trustDomain !== expect.trustDomain) {
    return { ok: false, error: `it belongs to trust domain "${file.trustDomain}", not "${expect.trustDomain}"` };
  }
  if (file.agentId !== expect.agentId) {
    return { ok: false, error: `it was written for agent ${file.agentId}, not the stored agent identity ${expect.agentId}` };
  }
  if (expect.roots.length === 0) return { ok: false, error: 'no stored server bundle to verify it with' };
  let own: TrustDomainBundle | undefined;
  const federated = new Map<string, TrustDomainBundle>();
  for (const b of file.bundles) {
    const bundle = trustDomainBundleOf(b.trustDomain, b.x509, b.jwtKeys);
    if (b.trustDomain === expect.trustDomain) own = bundle;
    else federated.set(b.trustDomain, bundle);
  }
  if (own === undefined) return { ok: false, error: 'it holds no bundle for the own trust domain' };

  const verifier = new ChainVerifier(expect.roots, { leafSignatures: 'first-per-issuer' });
  const skipped = { expired: 0, unverified: 0, malformed: 0 };
  const svids: RestoredSvid[] = [];
  const seen = new Set<string>();
  const prefix = `spiffe://${expect.trustDomain}/`;
  for (const s of file.svids) {
    const entry = storedEntry(s);
    if (typeof entry === 'string' || !entry.spiffeId.startsWith(prefix) || seen.has(entry.id)) {
      skipped.malformed++;
      continue;
    }
    let chain: CertificateInfo[];
    try {
      chain = splitConcatenated(s.certChain).map((der) => readCertificate(der));
    } catch {
      skipped.malformed++;
      continue;
    }
    const leaf = chain[0];
    if (leaf === undefined || leaf.uris.length !== 1 || leaf.uris[0] !== entry.spiffeId || s.privateKey.length === 0) {
      skipped.malformed++;
      continue;
    }
    if (leaf.notAfter <= expect.now) {
      skipped.expired++;
      continue;
    }
    if (!verifier.verifyCertificates(chain)) {
      skipped.unverified++;
      continue;
    }
    seen.add(entry.id);
    svids.push({ entry, certChain: s.certChain, privateKey: s.privateKey, notBefore: leaf.notBefore, notAfter: leaf.notAfter });
  }
  return { ok: true, value: { svids, own, federated, verifiedWith: Buffer.concat(expect.roots), skipped } };
}

function storedBundle(b: TrustDomainBundle): StoredBundle {
  return {
    trustDomain: b.trustDomain,
    x509: b.x509,
    jwtKeys: [...b.jwtKeys].map(([keyId, key]) => ({ keyId, spki: key.export({ format: 'der', type: 'spki' }) })),
  };
}

/** The file content for the manager's current state (references to its buffers, no copies). */
export function fileContentOf(cache: PersistableCache, meta: { trustDomain: string; agentId: string; now: number }): CacheFileContent {
  return {
    writtenAt: meta.now,
    trustDomain: meta.trustDomain,
    agentId: meta.agentId,
    bundles: cache.bundles.map(storedBundle),
    svids: cache.svids.map(({ entry, identity }) => ({
      entryId: entry.id,
      spiffeId: entry.spiffeId,
      hint: entry.hint,
      createdAt: entry.createdAt,
      revisionNumber: entry.revisionNumber,
      selectors: entry.selectors,
      federatesWith: entry.federatesWith,
      certChain: identity.certChain,
      privateKey: identity.privateKey,
    })),
  };
}
