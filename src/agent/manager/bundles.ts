/**
 * Trust bundles as the Workload API serves them: the own bundle and federated bundles
 * turned into immutable BundleSnapshots (concatenated DER roots, JWKS JSON, parsed JWT
 * keys). A new snapshot object exists only when content changed, so consumers may compare
 * snapshots by reference.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Bundle__Output } from '../../gen/spire/api/types/Bundle.ts';
import type { BundleSnapshot } from './workload-state.ts';

/** One trust domain's trust material in wire-ready form. */
export interface TrustDomainBundle {
  readonly trustDomain: string;
  /** Concatenated DER roots. */
  readonly x509: Buffer;
  /** JWKS JSON bytes. */
  readonly jwks: Buffer;
  readonly jwtKeys: ReadonlyMap<string, KeyObject>;
  /** A content fingerprint for change detection. */
  readonly fingerprint: string;
  /**
   * The X.509 roots the server marked tainted (`localauthority x509 taint`), DER; none when
   * absent. Still trusted (they stay in `x509`), but SVIDs they signed are to be replaced at
   * once. Not part of the fingerprint: workloads see the same bundle either way.
   */
  readonly taintedX509?: readonly Buffer[];
  /** The IDs of the JWT keys the server marked tainted; none when absent. Not in the fingerprint. */
  readonly taintedJwtKeyIds?: readonly string[];
}

/** Builds the wire forms of a server Bundle message. Keys that cannot be parsed are skipped. */
export function toTrustDomainBundle(b: Bundle__Output, onBadKey?: (keyId: string, error: string) => void): TrustDomainBundle {
  const bundle = trustDomainBundleOf(
    b.trust_domain,
    Buffer.concat(b.x509_authorities.map((a) => a.asn1)),
    b.jwt_authorities.map((k) => ({ keyId: k.key_id, spki: k.public_key })),
    onBadKey,
  );
  const tainted = b.x509_authorities.filter((a) => a.tainted).map((a) => a.asn1);
  const taintedKeyIds = b.jwt_authorities.filter((k) => k.tainted && k.key_id !== '').map((k) => k.key_id);
  if (tainted.length === 0 && taintedKeyIds.length === 0) return bundle;
  return { ...bundle, ...(tainted.length === 0 ? {} : { taintedX509: tainted }), ...(taintedKeyIds.length === 0 ? {} : { taintedJwtKeyIds: taintedKeyIds }) };
}

/**
 * Remembers which tainted authorities (X.509 roots as DER, or JWT key IDs) were already acted
 * on, so each taint is acted on once (as SPIRE's agent does): an SVID re-minted after a taint
 * is not re-minted again, even if the server kept signing with the tainted authority. Use one
 * tracker per kind of authority.
 */
export class TaintTracker {
  #seen = new Set<string>();

  /**
   * The authorities of `tainted` not seen in earlier calls. Those no longer tainted are
   * forgotten, so the set stays as small as the bundle.
   */
  newlyTainted<T extends Buffer | string>(tainted: readonly T[]): T[] {
    const current = new Map(tainted.map((a) => [typeof a === 'string' ? a : a.toString('base64'), a]));
    const fresh = [...current].filter(([key]) => !this.#seen.has(key)).map(([, a]) => a);
    this.#seen = new Set(current.keys());
    return fresh;
  }
}

/**
 * A JWK's members in the order go-jose writes them (kty, kid, crv, x, y, n, e), so the JWKS
 * bytes equal SPIRE's, not just the same JSON: clients that cache or compare the document
 * byte for byte see no change between the two agents.
 */
function inGoJoseOrder(jwk: Record<string, unknown>): Record<string, unknown> {
  const ordered: Record<string, unknown> = {};
  for (const member of ['kty', 'kid', 'crv', 'x', 'y', 'n', 'e']) if (member in jwk) ordered[member] = jwk[member];
  for (const [member, value] of Object.entries(jwk)) if (!(member in ordered)) ordered[member] = value;
  return ordered;
}

/**
 * Builds the wire forms from concatenated DER roots and JWT keys (SPKI DER) in order; keys
 * without an ID or that cannot be parsed are skipped. Equal input gives an equal fingerprint.
 */
export function trustDomainBundleOf(
  trustDomain: string,
  x509: Buffer,
  jwtAuthorities: readonly { readonly keyId: string; readonly spki: Buffer }[],
  onBadKey?: (keyId: string, error: string) => void,
): TrustDomainBundle {
  const jwtKeys = new Map<string, KeyObject>();
  const jwks: Record<string, unknown>[] = [];
  for (const k of jwtAuthorities) {
    if (k.keyId === '') continue;
    try {
      const key = createPublicKey({ key: k.spki, format: 'der', type: 'spki' });
      jwtKeys.set(k.keyId, key);
      jwks.push(inGoJoseOrder({ ...key.export({ format: 'jwk' }), kid: k.keyId }));
    } catch (err) {
      onBadKey?.(k.keyId, err instanceof Error ? err.message : String(err));
    }
  }
  const jwksBytes = Buffer.from(JSON.stringify({ keys: jwks }, null, 4));
  const fingerprint = `${x509.toString('base64')}|${jwksBytes.toString('base64')}`;
  return { trustDomain, x509, jwks: jwksBytes, jwtKeys, fingerprint };
}

/** Assembles snapshots; `update` returns the previous snapshot object when nothing changed. */
export class BundleBook {
  readonly trustDomain: string;
  #own: TrustDomainBundle | undefined;
  #federated = new Map<string, TrustDomainBundle>();
  #snapshot: BundleSnapshot | undefined;

  constructor(trustDomain: string) {
    this.trustDomain = trustDomain;
  }

  /** The current snapshot, or undefined before the own bundle is known. */
  get snapshot(): BundleSnapshot | undefined {
    return this.#snapshot;
  }

  /** The own bundle's roots (for server TLS), if known. */
  get own(): TrustDomainBundle | undefined {
    return this.#own;
  }

  /**
   * Replaces the own bundle (if given) and the whole federated set. Returns true when the
   * snapshot changed.
   */
  update(own: TrustDomainBundle | undefined, federated: ReadonlyMap<string, TrustDomainBundle>): boolean {
    const nextOwn = own ?? this.#own;
    if (nextOwn === undefined) return false;
    const sameOwn = this.#own !== undefined && this.#own.fingerprint === nextOwn.fingerprint;
    const sameFederated =
      federated.size === this.#federated.size &&
      [...federated].every(([td, b]) => this.#federated.get(td)?.fingerprint === b.fingerprint);
    if (sameOwn && sameFederated && this.#snapshot !== undefined) return false;
    this.#own = nextOwn;
    this.#federated = new Map(federated);
    const all = [[this.trustDomain, nextOwn] as const, ...[...this.#federated].filter(([td]) => td !== this.trustDomain)];
    this.#snapshot = {
      trustDomain: this.trustDomain,
      x509: new Map(all.map(([td, b]) => [td, b.x509])),
      jwks: new Map(all.map(([td, b]) => [td, b.jwks])),
      jwtKeys: new Map(all.map(([td, b]) => [td, b.jwtKeys])),
    };
    return true;
  }

  /** Federated bundles currently known, by trust domain. */
  federated(): ReadonlyMap<string, TrustDomainBundle> {
    return this.#federated;
  }
}
