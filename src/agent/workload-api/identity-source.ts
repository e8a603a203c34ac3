/**
 * The narrow interface the Workload API consumes from the agent's cache manager. The
 * Workload API never sees entries, the server or rotation: only immutable snapshots.
 */
import type { KeyObject } from 'node:crypto';
import type { Selector } from '../../common/selector.ts';

/** The X509-SVID of one registration entry, ready to serve. Immutable. */
export interface X509Identity {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  /** Entry creation time (Unix seconds): among duplicate hints the oldest entry wins. */
  readonly createdAt: number;
  /** DER leaf then intermediates, concatenated (X509SVID.x509_svid). */
  readonly certChain: Buffer;
  /** Unencrypted PKCS#8 DER (X509SVID.x509_svid_key). */
  readonly privateKey: Buffer;
  /** Unix seconds. */
  readonly expiresAt: number;
  /** Trust domain names the entry federates with. */
  readonly federatesWith: readonly string[];
}

/** All trust bundles the agent knows. Immutable; a new object whenever anything changes. */
export interface BundleSnapshot {
  /** The agent's own trust domain name (always present in every map). */
  readonly trustDomain: string;
  /** Trust domain name → concatenated DER roots. */
  readonly x509: ReadonlyMap<string, Buffer>;
  /** Trust domain name → JWKS JSON bytes: `{"keys":[…]}`, JWT keys only, each with `kid`, no `use`. */
  readonly jwks: ReadonlyMap<string, Buffer>;
  /** Trust domain name → JWT verification keys by key ID (for ValidateJWTSVID). */
  readonly jwtKeys: ReadonlyMap<string, ReadonlyMap<string, KeyObject>>;
}

/** The full state of one workload; every notification carries all of it. Immutable. */
export interface WorkloadState {
  /**
   * Matching entries that have a cached SVID, sorted by entry ID, NOT yet hint-filtered.
   * Empty means "no identity issued".
   */
  readonly identities: readonly X509Identity[];
  readonly bundles: BundleSnapshot;
}

/** An entry a JWT-SVID may be minted for. */
export interface JwtCandidate {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  readonly createdAt: number;
}

/** A JWT-SVID for one entry. */
export interface JwtIdentity {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  readonly createdAt: number;
  readonly token: string;
}

/** What the Workload API needs from the cache manager. */
export interface IdentitySource {
  /**
   * Subscribes a workload with these selectors. The listener gets the full state as soon
   * as every matching entry has a cached SVID (at once when none match), then again after
   * every change that affects it. Workloads with equal selector sets receive the same
   * WorkloadState object, so a response may be serialized once and shared.
   * Throws ApiError(UNAVAILABLE) while the agent has not synced with the server yet.
   * Returns the unsubscribe function.
   */
  subscribe(selectors: readonly Selector[], listener: (state: WorkloadState) => void): () => void;
  /**
   * JWT-SVIDs for every matching entry (cached X.509 or not), sorted by entry ID, minted or
   * taken from the JWT cache. Rejects with ApiError: UNAVAILABLE when minting failed and no
   * cached token is valid.
   */
  fetchJwtSvids(
    selectors: readonly Selector[],
    audience: readonly string[],
    signal: AbortSignal,
    /** Narrows the matching entries (sorted by entry ID) before anything is minted. */
    select?: (candidates: readonly JwtCandidate[]) => readonly JwtCandidate[],
  ): Promise<JwtIdentity[]>;
  /** The current bundles; throws ApiError(UNAVAILABLE) before the first bundle is known. */
  bundles(): BundleSnapshot;
  /** Calls the listener with the current bundles and then on every change. Returns unsubscribe. */
  subscribeBundles(listener: (bundles: BundleSnapshot) => void): () => void;
}
