/**
 * The narrow interface the Workload API consumes from the agent's cache manager. The
 * Workload API never sees entries, the server or rotation: only immutable snapshots, whose
 * types the manager owns (manager/workload-state.ts). The manager satisfies this interface
 * structurally and does not import it: the consumer declares what it uses.
 */
import type { Selector } from '../../common/selector.ts';
import type { BundleSnapshot, JwtCandidate, JwtIdentity, WorkloadState } from '../manager/workload-state.ts';

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
