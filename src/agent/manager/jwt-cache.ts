/**
 * JWT-SVIDs cached by SPIFFE ID + sorted audiences (duplicates count, order does not), a
 * hard LRU cap, renewed once past a random 45–55 % of their lifetime, and served from
 * cache while still valid when minting fails. Concurrent requests for one key share one
 * mint (single-flight).
 */
import { LRUCache } from 'lru-cache';
import type { EventCounter } from '../../common/recorders.ts';
import { shouldRotate } from '../svid/rotation-policy.ts';

/** A minted JWT-SVID. Times are Unix seconds. */
export interface CachedJwt {
  readonly token: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** The cache key of a SPIFFE ID and audience list. */
export function jwtCacheKey(spiffeId: string, audience: readonly string[]): string {
  return `${spiffeId}\u0000${[...audience].sort().join('\u0000')}`;
}

export interface JwtCacheOptions {
  maxSize: number;
  /** Milliseconds since the epoch. */
  now: () => number;
  random?: () => number;
  /** Counts tokens minted (once per mint, not per waiter). */
  minted?: EventCounter;
  /** Counts the minted tokens that replaced a cached one. */
  renewed?: EventCounter;
}

/** The JWT-SVID cache. */
export class JwtCache {
  readonly #cache: LRUCache<string, CachedJwt>;
  readonly #inflight = new Map<string, Promise<CachedJwt>>();
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #minted: EventCounter | undefined;
  readonly #renewed: EventCounter | undefined;

  constructor(opts: JwtCacheOptions) {
    this.#cache = new LRUCache({ max: Math.max(1, opts.maxSize) });
    this.#now = opts.now;
    this.#random = opts.random ?? Math.random;
    this.#minted = opts.minted;
    this.#renewed = opts.renewed;
  }

  get size(): number {
    return this.#cache.size;
  }

  /**
   * Returns a token for the key: the cached one while fresh, else a new one from `mint`.
   * If minting fails and the cached token has not expired, the cached token is returned.
   */
  async get(key: string, mint: () => Promise<CachedJwt>): Promise<CachedJwt> {
    const cached = this.#cache.get(key);
    const nowSeconds = this.#now() / 1000;
    if (cached !== undefined && !shouldRotate(nowSeconds, cached.issuedAt, cached.expiresAt, this.#random())) return cached;
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      const renewal = cached !== undefined;
      pending = mint()
        .then((fresh) => {
          this.#minted?.inc();
          if (renewal) this.#renewed?.inc();
          return fresh;
        })
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    try {
      const fresh = await pending;
      if (fresh.issuedAt === 0 || fresh.expiresAt === 0 || fresh.issuedAt > fresh.expiresAt) {
        throw new Error(`jwt-cache: server returned a JWT-SVID with invalid times (iat ${fresh.issuedAt}, exp ${fresh.expiresAt})`);
      }
      this.#cache.set(key, fresh);
      return fresh;
    } catch (err) {
      if (cached !== undefined && cached.expiresAt > this.#now() / 1000) return cached;
      throw err;
    }
  }

  /**
   * Drops the tokens signed with one of `keyIds` (the `kid` of their JOSE header), so the
   * next request mints a new one: SPIRE's agent does so for tainted JWT keys. Returns how
   * many were dropped. Minting in flight is left alone.
   */
  evictSignedBy(keyIds: ReadonlySet<string>): number {
    // Collected first: the LRU's iterator is not to be mutated under.
    const signed = [...this.#cache.entries()].filter(([, jwt]) => keyIds.has(keyIdOf(jwt.token) ?? '')).map(([key]) => key);
    for (const key of signed) this.#cache.delete(key);
    return signed.length;
  }

  /** Drops every token (e.g. after the agent's trust domain keys changed). */
  clear(): void {
    this.#cache.clear();
  }
}

/** The `kid` of a compact JWS's protected header, or undefined when it has none or is malformed. */
function keyIdOf(token: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8')) as { kid?: unknown };
    return typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}
