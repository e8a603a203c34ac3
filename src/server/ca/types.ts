/** The public types of the server CA. */
import type { KeyObject } from 'node:crypto';

import type { Clock } from '../../common/clock.ts';
import type { KeyType } from './keys.ts';
import type { DiskUpstreamConfig } from './upstream-disk.ts';
import type { DistinguishedName } from './x509-name.ts';

export type { DiskUpstreamConfig } from './upstream-disk.ts';
export type { DistinguishedName } from './x509-name.ts';
export type { KeyType } from './keys.ts';

/** Configuration of {@link CertificateAuthority}. */
export interface CaOptions {
  /** The server data directory; the CA keeps its state in `<dataDir>/ca/` (mode 0700). */
  dataDir: string;
  trustDomain: string;
  clock?: Clock;
  /** Lifetime of each X.509 CA and JWT key. Default 24 h (SPIRE's `ca_ttl`). */
  caTtlMs?: number;
  /** Default X509-SVID lifetime. Default 1 h (SPIRE's `default_x509_svid_ttl`). */
  defaultX509SvidTtlMs?: number;
  /** Default JWT-SVID lifetime. Default 5 min (SPIRE's `default_jwt_svid_ttl`). */
  defaultJwtSvidTtlMs?: number;
  /** Subject of CA certificates. Default `C=US, O=SPIFFE` (SPIRE's `ca_subject`). */
  caSubject?: DistinguishedName;
  /** Sign the CA with a key and certificate on disk instead of self-signing. */
  upstream?: DiskUpstreamConfig;
  /** `refresh_hint` published with the bundle, seconds. Default 300. */
  refreshHintSeconds?: number;
  /** Key type of new X.509 CAs: `ec-p256` (default), `ec-p384`, `rsa-2048`, `rsa-4096` (SPIRE's `ca_key_type`). */
  caKeyType?: KeyType;
  /** Key type of new JWT keys; defaults to `caKeyType` (SPIRE's `jwt_key_type`). P-256 signs ES256, P-384 ES384, RSA RS256. */
  jwtKeyType?: KeyType;
  /** The `iss` claim of every JWT-SVID (SPIRE's `jwt_issuer`); no `iss` when undefined or empty. */
  jwtIssuer?: string;
}

/** A request for an X509-SVID for a known public key. */
export interface X509SvidRequest {
  /** A SPIFFE ID in the CA's trust domain, with a non-empty path. */
  spiffeId: string;
  /** The subject public key: EC P-256/P-384/P-521 or RSA ≥ 2048. */
  publicKey: KeyObject;
  /** Lifetime; `undefined` or ≤ 0 means the default. Always capped at the CA's notAfter. */
  ttlMs?: number;
  /** DNS SANs; the first one also becomes the subject CN, as in SPIRE. */
  dnsNames?: readonly string[];
  /** Subject replacing the default `C=US, O=SPIRE`. */
  subject?: DistinguishedName;
}

/** A request for an X509-SVID from a PKCS#10 CSR (the key is the CSR's, the ID is the caller's). */
export interface CsrSvidRequest {
  /** DER PKCS#10. Its URI SANs, if any, must be exactly `[spiffeId]`. Its subject and DNS SANs are ignored. */
  csrDer: Uint8Array;
  spiffeId: string;
  ttlMs?: number;
  dnsNames?: readonly string[];
}

/** A signed X509-SVID. */
export interface X509SvidResult {
  /** DER certificates: the leaf, then intermediates up to but excluding the root. */
  certChain: Buffer[];
  /** The leaf's notAfter, Unix seconds. */
  expiresAt: number;
  /** The leaf's serial number in decimal (as Go's `big.Int.String()` and SPIRE's logs print it). */
  serialNumber: string;
}

/** A request for a JWT-SVID. */
export interface JwtSvidRequest {
  spiffeId: string;
  /** At least one non-empty audience (empty strings are dropped, as SPIRE does). */
  audience: readonly string[];
  ttlMs?: number;
}

/** A signed JWT-SVID; times in Unix seconds. */
export interface JwtSvidResult {
  token: string;
  issuedAt: number;
  expiresAt: number;
}

/** A JWT signing key as published in the bundle. */
export interface JwtAuthority {
  readonly keyId: string;
  /** DER SubjectPublicKeyInfo. */
  readonly publicKey: Buffer;
  /** Unix seconds. */
  readonly expiresAt: number;
}

/**
 * The trust domain's bundle as the CA maintains it. The object is shared and frozen: callers
 * must not mutate the buffers. A new object is made whenever the content changes.
 */
export interface CaBundle {
  readonly trustDomain: string;
  /** DER root certificates (self-signed CA roots, or the upstream roots). */
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: readonly JwtAuthority[];
  /** Seconds. */
  readonly refreshHint: number;
  /** Increases by one with every content change. */
  readonly sequenceNumber: number;
}

/** What a rotation step did. */
export interface RotationResult {
  /** The bundle content changed (authority added or pruned): notify bundle watchers. */
  bundleChanged: boolean;
  /** A new X.509 CA now signs: re-issue identities that should chain to it (e.g. the server's own). */
  x509CaActivated: boolean;
  /** A new JWT key now signs. */
  jwtKeyActivated: boolean;
}

/** The server's own TLS identity, an X509-SVID for `spiffe://<td>/spire/server`. */
export interface ServerIdentity {
  spiffeId: string;
  /** PKCS#8 PEM of a fresh P-256 key. */
  keyPem: string;
  /** PEM leaf then intermediates. */
  certChainPem: string;
  certChainDer: Buffer[];
  /** Unix seconds. */
  expiresAt: number;
}

/** A summary of one authority, for status output and scheduling. Times are ms since the epoch. */
export interface AuthorityInfo {
  /** X.509: the CA certificate's subject key ID in hex; JWT: the kid. */
  readonly id: string;
  readonly issuedAt: number;
  readonly notAfter: number;
  readonly status: 'active' | 'prepared';
  /** X.509 only: SHA-256 fingerprint of the upstream certificate that signed it. */
  readonly upstreamFingerprint?: string;
}

/** The CA state for status output (`localauthority show`-like). */
export interface AuthorityStatus {
  readonly x509: readonly AuthorityInfo[];
  readonly jwt: readonly AuthorityInfo[];
}

/** The CA. Signing methods are synchronous (a P-256 signature is ~40 µs); rotation is async (disk). */
export interface CertificateAuthority {
  readonly trustDomain: string;
  /** Signs an X509-SVID for a public key. Errors: `INVALID_ARGUMENT` for a bad ID, key or DNS name. */
  signX509Svid(req: X509SvidRequest): X509SvidResult;
  /**
   * Signs an X509-SVID for the key of a PKCS#10 CSR. Errors (`INVALID_ARGUMENT`): `missing CSR`,
   * `malformed CSR: …`, `invalid CSR signature: …`, a URI SAN other than the SPIFFE ID, a bad ID.
   */
  signX509SvidFromCsr(req: CsrSvidRequest): X509SvidResult;
  /** Signs a JWT-SVID (ES256, ES384 or RS256 after the active JWT key). Errors: `INVALID_ARGUMENT` for a bad ID or an empty audience. */
  signJwtSvid(req: JwtSvidRequest): JwtSvidResult;
  /** The current bundle (shared, frozen object; a new one after every change). */
  bundle(): CaBundle;
  /** Runs the rotation schedule at the clock's now; persists and reports what changed. */
  maybeRotate(): Promise<RotationResult>;
  /** Activates a successor X.509 CA and JWT key now (preparing them if needed). */
  rotate(): Promise<RotationResult>;
  /**
   * When (ms since the epoch) `maybeRotate` next has something to do; schedule a timer for then
   * (it may already be past when `maybeRotate` has not run). Changes after every rotation step.
   */
  nextRotationAt(): number;
  /** Issues the server's own TLS identity (`spiffe://<td>/spire/server`) with a fresh P-256 key. */
  issueServerIdentity(): ServerIdentity;
  /** Active and prepared authorities, for status output. */
  status(): AuthorityStatus;
}
