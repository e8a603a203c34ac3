/**
 * What the cache manager hands out: immutable snapshots of a workload's X509-SVIDs, its
 * JWT-SVIDs and the trust bundles. The manager produces these types; consumers (the
 * Workload API's IdentitySource in workload-api/identity-source.ts) import them from here,
 * so the manager never imports from the layer it feeds.
 */
import type { KeyObject } from 'node:crypto';

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
