/**
 * What the cache manager records: SVIDs minted, and how many of them replaced a cached one
 * (rotation at half-life, or a changed entry). Cache sizes are not recorded here; they are
 * read from `CacheManager.stats()` when scraped.
 */
import { NOOP_COUNTER, type EventCounter } from '../../common/recorders.ts';

/** The cache manager's recorders. */
export interface CacheManagerMetrics {
  /** X509-SVIDs received from the server and cached. */
  readonly x509Minted: EventCounter;
  /** Of those, the ones that replaced a cached SVID of the same entry. */
  readonly x509Rotated: EventCounter;
  /** JWT-SVIDs received from the server. */
  readonly jwtMinted: EventCounter;
  /** Of those, the ones that renewed a cached token for the same SPIFFE ID and audience. */
  readonly jwtRotated: EventCounter;
}

/** Records nothing. */
export const NOOP_CACHE_METRICS: CacheManagerMetrics = {
  x509Minted: NOOP_COUNTER,
  x509Rotated: NOOP_COUNTER,
  jwtMinted: NOOP_COUNTER,
  jwtRotated: NOOP_COUNTER,
};
