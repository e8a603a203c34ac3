/**
 * What the Workload API client returns: plain, immutable values with certificate chains and
 * bundles already split into one DER buffer per certificate. Trust domains are keyed by name
 * (`example.org`), whatever form (`spiffe://example.org` per the spec) the server used.
 */

/** One X509-SVID from `FetchX509SVID`. */
export interface X509Svid {
  readonly spiffeId: string;
  /** The entry's hint; empty when none. */
  readonly hint: string;
  /** DER certificates: the leaf, then intermediates. Never empty. */
  readonly certificates: readonly Buffer[];
  /** The private key as unencrypted PKCS#8 DER. */
  readonly privateKey: Buffer;
  /** DER roots of the SVID's own trust domain. Never empty. */
  readonly bundle: readonly Buffer[];
}

/** One `X509SVIDResponse`: the SVIDs (the first is the default) and the federated bundles. */
export interface X509Context {
  /** Never empty. */
  readonly svids: readonly X509Svid[];
  /** Trust domain name → DER roots. */
  readonly federatedBundles: ReadonlyMap<string, readonly Buffer[]>;
}

/** One `X509BundlesResponse`: trust domain name → DER roots. */
export type X509Bundles = ReadonlyMap<string, readonly Buffer[]>;

/** One `JWTBundlesResponse`: trust domain name → JWKS JSON bytes exactly as sent. */
export type JwtBundles = ReadonlyMap<string, Buffer>;

/** One JWT-SVID from `FetchJWTSVID`. */
export interface JwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  readonly hint: string;
}

/** A JSON value, as `google.protobuf.Value` carries it. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** The result of `ValidateJWTSVID`. */
export interface ValidatedJwtSvid {
  readonly spiffeId: string;
  /** The token's claims as the agent returned them (numbers are doubles, `aud` a list). */
  readonly claims: { readonly [key: string]: JsonValue };
}
