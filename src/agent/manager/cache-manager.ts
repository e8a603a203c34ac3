/**
 * The agent's cache manager: authorized entries, their X509-SVIDs, JWT-SVIDs and trust
 * bundles, and the workload subscriptions fed from them. It hands out the immutable types of
 * workload-state.ts and satisfies the Workload API's IdentitySource structurally (checked where
 * agent.ts passes it to startWorkloadApi); it imports nothing from workload-api/.
 *
 * Data flow: a sync delivers entries + bundles (applySync) → the minter creates a fresh key
 * and CSR per entry that needs an SVID and asks the server in batches (mintDue) → each
 * change recomputes the affected subscription groups and pushes full state to listeners.
 *
 * Invariants:
 * - every record in #svids belongs to an entry in #entries (removed entries drop their SVID);
 * - X509Identity, WorkloadState and BundleSnapshot objects are immutable, so a changed
 *   reference means changed content;
 * - a group's first state is delivered only when every matching entry has an SVID;
 * - before the first sync, workloads are answered only from a restored cache (restore), and
 *   only while the agent identity it was written under is unchanged; the first sync replaces
 *   the restored entries and drops restored SVIDs the server's bundle no longer verifies;
 * - an SVID signed by an own root the server tainted is replaced in the next mint run, once
 *   per taint (see #markTainted); a cached JWT-SVID signed with a tainted key is dropped.
 */
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import type { Selector } from '../../common/selector.ts';
import { newKeyAndCsr } from '../../common/csr.ts';
import { readCertificate } from '../../common/cert-reader.ts';
import { ChainVerifier } from '../../common/chain-verify.ts';
import { splitConcatenated } from '../../common/der.ts';
import { shouldRotate } from '../svid/rotation-policy.ts';
import type { BundleSnapshot, JwtCandidate, JwtIdentity, WorkloadState, X509Identity } from './workload-state.ts';
import { EntrySet, type CachedEntry } from './entries.ts';
import { BundleBook, TaintTracker, type TrustDomainBundle } from './bundles.ts';
import { JwtCache, jwtCacheKey } from './jwt-cache.ts';
import { Subscriptions, groupKeyOf, type Group, type StateListener } from './subscriptions.ts';
import { NOOP_CACHE_METRICS, type CacheManagerMetrics } from './metrics.ts';

/** What the manager needs from the server to mint workload SVIDs. */
export interface WorkloadSvidMinter {
  /** Index-aligned results; a failed item has a non-zero status code and no chain. */
  batchNewX509Svid(params: readonly { entryId: string; csr: Buffer }[]): Promise<
    { code: number; message: string; certChain: Buffer[] }[]
  >;
  newJwtSvid(entryId: string, audience: readonly string[]): Promise<{ token: string; issuedAt: number; expiresAt: number }>;
}

export interface CacheManagerOptions {
  trustDomain: string;
  minter: WorkloadSvidMinter;
  logger: Logger;
  clock: Clock;
  x509SvidCacheMaxSize: number;
  jwtSvidCacheMaxSize: number;
  /** Entries per BatchNewX509SVID call (SPIRE starts at 500). */
  batchSize?: number;
  random?: () => number;
  /** SVIDs minted and rotated; nothing is recorded when absent. */
  metrics?: CacheManagerMetrics;
  /**
   * Called after what {@link CacheManager.persistable} returns may have changed (SVIDs
   * minted or dropped, entries or bundles changed). Called on sync and mint paths, never
   * per workload call; must be cheap (the workload cache writer only marks itself dirty).
   */
  onPersistentChange?: () => void;
}

/** An X509-SVID read back from the workload cache file, already checked by the reader. */
export interface RestoredSvid {
  readonly entry: CachedEntry;
  readonly certChain: Buffer;
  /** PKCS#8 DER. */
  readonly privateKey: Buffer;
  /** Milliseconds. */
  readonly notBefore: number;
  readonly notAfter: number;
}

/** A workload cache read back at start, to serve before the first sync. */
export interface RestoredCache {
  readonly svids: readonly RestoredSvid[];
  readonly own: TrustDomainBundle;
  readonly federated: ReadonlyMap<string, TrustDomainBundle>;
  /** The roots (concatenated DER) the SVIDs were verified against when read. */
  readonly verifiedWith: Buffer;
  /** Whether the agent still has the identity the cache was written under. */
  readonly stillOwned: () => boolean;
}

/** What the workload cache file is written from: references to live records, no copies. */
export interface PersistableCache {
  /** The own bundle first, then the federated ones. */
  readonly bundles: readonly TrustDomainBundle[];
  /** Entries whose SVID is current for their revision, with that SVID. */
  readonly svids: readonly { readonly entry: CachedEntry; readonly identity: X509Identity }[];
}

/** An X509-SVID record: the served identity plus what rotation decisions need. */
interface SvidRecord {
  identity: X509Identity;
  /** Milliseconds. */
  notBefore: number;
  notAfter: number;
  /** Revision and SPIFFE ID of the entry it was minted for. */
  revision: number;
  spiffeId: string;
  lastAccess: number;
  /** Read from the workload cache file rather than minted by this process. */
  restored: boolean;
  /** Signed by an own root the server has since tainted: due at once. Never set on a new record. */
  tainted: boolean;
}

const NO_ENTRIES: ReadonlyMap<string, CachedEntry> = new Map();

/** During a mint run of several batches, how often minted SVIDs are pushed to subscribers. */
export const MINT_PUSH_INTERVAL_MS = 5_000;

/** Keys generated between yields to the event loop while minting. */
const KEYS_PER_TICK = 32;

/** The cache manager (see file comment). */
export class CacheManager {
  readonly #opts: CacheManagerOptions;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #metrics: CacheManagerMetrics;
  #entries = new EntrySet([]);
  readonly #svids = new Map<string, SvidRecord>();
  #bundles: BundleBook;
  readonly #subs = new Subscriptions();
  readonly #bundleListeners = new Set<(b: BundleSnapshot) => void>();
  readonly #jwt: JwtCache;
  #synced = false;
  /** Set by restore() until the first sync (or until dropped): the restored state's checks. */
  #restored: { readonly stillOwned: () => boolean; readonly roots: Buffer } | undefined;
  readonly #changed: () => void;
  #minting: Promise<void> | undefined;
  #mintAgain = false;
  readonly #taints = new TaintTracker();
  readonly #jwtTaints = new TaintTracker();

  constructor(opts: CacheManagerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#random = opts.random ?? Math.random;
    this.#metrics = opts.metrics ?? NOOP_CACHE_METRICS;
    this.#changed = opts.onPersistentChange ?? (() => undefined);
    this.#bundles = new BundleBook(opts.trustDomain);
    this.#jwt = new JwtCache({
      maxSize: opts.jwtSvidCacheMaxSize,
      now: () => opts.clock.now(),
      random: this.#random,
      minted: this.#metrics.jwtMinted,
      renewed: this.#metrics.jwtRotated,
    });
  }

  // ---- state fed by the synchronizer -------------------------------------------------

  /** Whether the first sync has been applied (before that, workloads get Unavailable). */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * The current entries, by ID (for the next sync's revision comparison). Empty before the
   * first sync: restored entries are not offered for reuse, so the first sync fetches every
   * entry in full from the server.
   */
  get entries(): ReadonlyMap<string, CachedEntry> {
    return this.#synced ? this.#entries.byId : NO_ENTRIES;
  }

  /** Trust domains the current entries federate with. */
  federatedTrustDomains(): string[] {
    const tds = new Set<string>();
    for (const e of this.#entries.byId.values()) for (const td of e.federatesWith) tds.add(td);
    tds.delete(this.#opts.trustDomain);
    return [...tds].sort();
  }

  /** The own bundle's roots as concatenated DER, once known. */
  ownRoots(): Buffer | undefined {
    return this.#bundles.own?.x509;
  }

  /**
   * Applies one sync: the complete entry list and the bundles. SVIDs of removed entries are
   * dropped; entries whose revision changed are re-minted by the next mintDue.
   */
  applySync(entries: readonly CachedEntry[], own: TrustDomainBundle | undefined, federated: ReadonlyMap<string, TrustDomainBundle>): void {
    const restored = this.#restored;
    this.#restored = undefined;
    if (restored !== undefined) this.#checkRestored(restored, own);
    const previous = this.#entries.byId;
    this.#entries = new EntrySet(entries.filter((e) => !e.storeSvid));
    // Persisted content changes when an SVID goes or its entry changes (a bundle, below).
    let changed = !this.#synced;
    for (const id of this.#svids.keys()) {
      const entry = this.#entries.byId.get(id);
      if (entry === undefined) {
        this.#svids.delete(id);
        changed = true;
      } else if (!changed && entry.revisionNumber !== previous.get(id)?.revisionNumber) {
        changed = true;
      }
    }
    const bundlesChanged = this.#bundles.update(own, federated);
    this.#synced = this.#bundles.snapshot !== undefined;
    if (own !== undefined) {
      this.#markTainted(this.#taints.newlyTainted(own.taintedX509 ?? []));
      this.#evictTaintedJwts(this.#jwtTaints.newlyTainted(own.taintedJwtKeyIds ?? []));
    }
    this.#evictOverCapacity();
    this.#refreshGroups();
    if (bundlesChanged) this.#notifyBundles();
    if (changed || bundlesChanged) this.#changed();
  }

  // ---- the restored workload cache ----------------------------------------------------

  /**
   * Serves a workload cache read back at start until the first sync replaces it. Ignored
   * once a sync has been applied. Restored SVIDs are not counted as minted.
   */
  restore(cache: RestoredCache): void {
    if (this.#synced) return;
    this.#entries = new EntrySet(cache.svids.map((s) => s.entry));
    this.#svids.clear();
    for (const s of cache.svids) {
      const e = s.entry;
      this.#svids.set(e.id, {
        identity: {
          entryId: e.id,
          spiffeId: e.spiffeId,
          hint: e.hint,
          createdAt: e.createdAt,
          certChain: s.certChain,
          privateKey: s.privateKey,
          expiresAt: Math.floor(s.notAfter / 1000),
          federatesWith: e.federatesWith,
        },
        notBefore: s.notBefore,
        notAfter: s.notAfter,
        revision: e.revisionNumber,
        spiffeId: e.spiffeId,
        lastAccess: 0,
        restored: true,
        tainted: false,
      });
    }
    this.#bundles = new BundleBook(this.#opts.trustDomain);
    this.#bundles.update(cache.own, cache.federated);
    this.#restored = { stillOwned: cache.stillOwned, roots: cache.verifiedWith };
  }

  /**
   * At the first sync after a restore: restored SVIDs go if the agent is now another
   * identity, or if the server's bundle differs from the roots they were checked against
   * when read and does not verify them.
   */
  #checkRestored(restored: { readonly stillOwned: () => boolean; readonly roots: Buffer }, own: TrustDomainBundle | undefined): void {
    if (!restored.stillOwned()) {
      this.#dropRestored();
      return;
    }
    if (own === undefined || own.x509.equals(restored.roots)) return;
    let roots: Buffer[] = [];
    try {
      roots = splitConcatenated(own.x509);
    } catch {
      // Unreadable roots verify nothing: every restored SVID is re-minted.
    }
    const verifier = new ChainVerifier(roots, { leafSignatures: 'first-per-issuer' });
    let dropped = 0;
    for (const [id, record] of this.#svids) {
      if (!record.restored) continue;
      let ok: boolean;
      try {
        ok = verifier.verify(splitConcatenated(record.identity.certChain));
      } catch {
        ok = false;
      }
      if (!ok) {
        this.#svids.delete(id);
        dropped++;
      }
    }
    if (dropped > 0) this.#log.warn({ dropped }, "restored X509-SVIDs not signed by the server's current bundle were dropped; minting new ones");
  }

  /**
   * Marks the SVIDs signed by newly tainted own roots as due, so the next mint run replaces
   * them and pushes them like rotations (SPIRE's forced rotation). Each taint is handled once
   * (TaintTracker): a replacement is never marked again, so a server that kept signing with a
   * tainted authority causes no mint loop. spire-server refuses to taint its active authority,
   * so replacements normally come from the new one.
   */
  #markTainted(roots: readonly Buffer[]): void {
    if (roots.length === 0) return;
    // The SVIDs came from our server over an authenticated channel: the question is which
    // authority signed them, not whether a leaf was forged, so one signature per issuer does.
    const verifier = new ChainVerifier(roots, { leafSignatures: 'first-per-issuer' });
    let marked = 0;
    for (const record of this.#svids.values()) {
      if (record.tainted) continue;
      let signed: boolean;
      try {
        signed = verifier.verify(splitConcatenated(record.identity.certChain));
      } catch {
        signed = false; // unreadable: not ours to judge here
      }
      if (!signed) continue;
      record.tainted = true;
      marked++;
    }
    this.#log.info({ tainted_authorities: roots.length, svids: marked }, `X.509 authority tainted: re-minting the ${marked} X509-SVID${marked === 1 ? '' : 's'} it signed`);
  }

  /** Drops cached JWT-SVIDs signed with newly tainted JWT keys: the next request mints anew. */
  #evictTaintedJwts(keyIds: readonly string[]): void {
    if (keyIds.length === 0) return;
    const dropped = this.#jwt.evictSignedBy(new Set(keyIds));
    this.#log.info({ key_ids: keyIds, jwt_svids: dropped }, `JWT key tainted: dropped the ${dropped} cached JWT-SVID${dropped === 1 ? '' : 's'} it signed`);
  }

  /** Forgets every SVID held before the first sync: they belong to another agent identity. */
  #dropRestored(): void {
    this.#log.warn({ dropped: this.#svids.size }, 'the agent has attested as another identity: restored workload cache dropped');
    this.#svids.clear();
    this.#changed();
  }

  /**
   * Whether workloads may be answered: after the first sync, or before it from a restored
   * cache while the agent identity is unchanged (checked per call: one comparison).
   */
  #serving(): boolean {
    if (this.#synced) return true;
    const restored = this.#restored;
    if (restored === undefined) return false;
    if (restored.stillOwned()) return true;
    this.#restored = undefined;
    this.#dropRestored();
    this.#entries = new EntrySet([]);
    this.#bundles = new BundleBook(this.#opts.trustDomain);
    return false;
  }

  /** The state the workload cache file is written from, or undefined before any bundle. */
  persistable(): PersistableCache | undefined {
    const own = this.#bundles.own;
    if (own === undefined || !this.#serving()) return undefined;
    const bundles = [own, ...[...this.#bundles.federated().values()].filter((b) => b.trustDomain !== this.#opts.trustDomain)];
    const svids: { entry: CachedEntry; identity: X509Identity }[] = [];
    for (const [id, record] of this.#svids) {
      const entry = this.#entries.byId.get(id);
      // A stale record (entry changed since minting) is about to be replaced: not worth keeping.
      if (entry === undefined || record.revision !== entry.revisionNumber || record.spiffeId !== entry.spiffeId) continue;
      svids.push({ entry, identity: record.identity });
    }
    return { bundles, svids };
  }

  // ---- minting ----------------------------------------------------------------------

  /** Entries that need an SVID now: missing (within the preload cap, or subscribed), stale or due. */
  #dueEntries(): CachedEntry[] {
    const now = this.#opts.clock.now();
    const subscribed = this.#subscribedEntryIds();
    const due: CachedEntry[] = [];
    let missingBudget = this.#opts.x509SvidCacheMaxSize - this.#svids.size;
    for (const entry of this.#entries.byId.values()) {
      const record = this.#svids.get(entry.id);
      if (record === undefined) {
        if (subscribed.has(entry.id)) due.push(entry);
        else if (missingBudget > 0) {
          missingBudget--;
          due.push(entry);
        }
        continue;
      }
      if (record.revision !== entry.revisionNumber || record.spiffeId !== entry.spiffeId) due.push(entry);
      else if (record.tainted || shouldRotate(now, record.notBefore, record.notAfter, this.#random())) due.push(entry);
    }
    return due;
  }

  /**
   * Mints every due SVID, in batches. Concurrent calls share one run; a call during a run
   * schedules one more pass so nothing that became due meanwhile is missed.
   */
  mintDue(): Promise<void> {
    if (this.#minting !== undefined) {
      this.#mintAgain = true;
      return this.#minting;
    }
    this.#minting = (async () => {
      try {
        do {
          this.#mintAgain = false;
          await this.#mintOnce();
        } while (this.#mintAgain);
      } finally {
        this.#minting = undefined;
      }
    })();
    return this.#minting;
  }

  async #mintOnce(): Promise<void> {
    const due = this.#dueEntries();
    const batchSize = this.#opts.batchSize ?? 500;
    // Minted SVIDs reach subscribers at the end of the run, and during a long run (many
    // batches) at most every MINT_PUSH_INTERVAL_MS: every push re-encodes each affected
    // workload's full state, so one push per batch made a 20,000-entry workload's 40 batches
    // encode and send about 500 MB in total instead of 25 MB (and as much garbage).
    let unpushed = false;
    let pushedAt = this.#opts.clock.now();
    const push = (): void => {
      if (!unpushed) return;
      unpushed = false;
      pushedAt = this.#opts.clock.now();
      this.#refreshGroups();
      this.#changed();
    };
    try {
      for (let i = 0; i < due.length; i += batchSize) {
        const stored = await this.#mintBatch(due.slice(i, i + batchSize));
        if (stored === undefined) return;
        if (stored > 0) unpushed = true;
        if (this.#opts.clock.now() - pushedAt >= MINT_PUSH_INTERVAL_MS) push();
      }
    } finally {
      push();
    }
  }

  /**
   * Mints one batch: returns how many SVIDs were stored, or undefined when the call to the
   * server failed (the run stops; the next sync retries).
   */
  async #mintBatch(batch: readonly CachedEntry[]): Promise<number | undefined> {
    const keys: { entry: CachedEntry; csr: Buffer; key: Buffer }[] = [];
    for (const [n, entry] of batch.entries()) {
      // Key generation is CPU work: yield regularly so the Workload API stays responsive.
      if (n > 0 && n % KEYS_PER_TICK === 0) await new Promise((r) => setImmediate(r));
      const { privateKey, csr } = newKeyAndCsr(entry.spiffeId);
      keys.push({ entry, csr, key: privateKey.export({ format: 'der', type: 'pkcs8' }) });
    }
    let results: Awaited<ReturnType<WorkloadSvidMinter['batchNewX509Svid']>>;
    try {
      results = await this.#opts.minter.batchNewX509Svid(keys.map((k) => ({ entryId: k.entry.id, csr: k.csr })));
    } catch (err) {
      this.#log.warn({ error: toApiError(err).message, entries: keys.length }, 'minting X509-SVIDs failed; will retry');
      return undefined;
    }
    const changed = new Set<string>();
    results.forEach((result, index) => {
      const k = keys[index];
      if (k === undefined) return;
      if (result.code !== Code.OK || result.certChain.length === 0) {
        this.#log.warn({ entry_id: k.entry.id, spiffe_id: k.entry.spiffeId, code: Code[result.code], error: result.message }, 'server refused to mint an X509-SVID');
        return;
      }
      if (this.#entries.byId.get(k.entry.id) !== k.entry) return; // the entry changed meanwhile
      this.#store(k.entry, result.certChain, k.key);
      changed.add(k.entry.id);
    });
    if (changed.size > 0) this.#log.debug({ minted: changed.size }, 'X509-SVIDs minted');
    return changed.size;
  }

  #store(entry: CachedEntry, chain: Buffer[], key: Buffer): void {
    const leaf = readCertificate(chain[0] as Buffer);
    const previous = this.#svids.get(entry.id);
    this.#metrics.x509Minted.inc();
    if (previous !== undefined) this.#metrics.x509Rotated.inc();
    this.#svids.set(entry.id, {
      identity: {
        entryId: entry.id,
        spiffeId: entry.spiffeId,
        hint: entry.hint,
        createdAt: entry.createdAt,
        certChain: Buffer.concat(chain),
        privateKey: key,
        expiresAt: Math.floor(leaf.notAfter / 1000),
        federatesWith: entry.federatesWith,
      },
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      revision: entry.revisionNumber,
      spiffeId: entry.spiffeId,
      lastAccess: previous?.lastAccess ?? 0,
      restored: false,
      tainted: false,
    });
  }

  /** The earliest time (ms) any cached SVID may need rotation; for scheduling the next check. */
  nextRotationCheck(): number {
    let earliest = Infinity;
    for (const r of this.#svids.values()) earliest = Math.min(earliest, r.tainted ? 0 : r.notBefore + 0.45 * (r.notAfter - r.notBefore));
    return earliest;
  }

  #subscribedEntryIds(): Set<string> {
    const ids = new Set<string>();
    for (const group of this.#subs.groups()) for (const e of this.#entries.match(group.selectorKeys)) ids.add(e.id);
    return ids;
  }

  /** Drops SVIDs of unsubscribed entries, least recently used first, while over the cap. */
  #evictOverCapacity(): void {
    const excess = this.#svids.size - this.#opts.x509SvidCacheMaxSize;
    if (excess <= 0) return;
    const subscribed = this.#subscribedEntryIds();
    const candidates = [...this.#svids.entries()]
      .filter(([id]) => !subscribed.has(id))
      .sort((a, b) => a[1].lastAccess - b[1].lastAccess)
      .slice(0, excess);
    for (const [id] of candidates) this.#svids.delete(id);
    if (candidates.length > 0) {
      this.#log.debug({ evicted: candidates.length }, 'X509-SVID cache over capacity');
      this.#changed();
    }
  }

  // ---- subscriptions ----------------------------------------------------------------

  #stateFor(group: Group, bundles: BundleSnapshot): WorkloadState | undefined {
    const matched = this.#entries.match(group.selectorKeys);
    const identities: X509Identity[] = [];
    let complete = true;
    for (const entry of matched) {
      const record = this.#svids.get(entry.id);
      if (record === undefined) complete = false;
      else identities.push(record.identity);
    }
    // Never a partial first response: wait until every matching entry has its SVID.
    if (!complete && group.state === undefined) return undefined;
    const previous = group.state;
    if (
      previous !== undefined &&
      previous.bundles === bundles &&
      previous.identities.length === identities.length &&
      previous.identities.every((id, i) => id === identities[i])
    ) {
      return previous;
    }
    return { identities, bundles };
  }

  #refreshGroups(): void {
    const bundles = this.#bundles.snapshot;
    if (bundles === undefined) return;
    const now = this.#opts.clock.now();
    for (const group of this.#subs.groups()) {
      const next = this.#stateFor(group, bundles);
      if (next === undefined || next === group.state) continue;
      group.state = next;
      for (const id of next.identities) {
        const record = this.#svids.get(id.entryId);
        if (record !== undefined) record.lastAccess = now;
      }
      for (const listener of [...group.listeners]) listener(next);
    }
  }

  #notReady(): ApiError {
    return new ApiError(Code.UNAVAILABLE, 'agent is not ready: it has not synchronized with the server yet');
  }

  subscribe(selectors: readonly Selector[], listener: StateListener): () => void {
    if (!this.#serving()) throw this.#notReady();
    const group = this.#subs.add(selectors, listener);
    const bundles = this.#bundles.snapshot as BundleSnapshot;
    if (group.state === undefined) group.state = this.#stateFor(group, bundles);
    const state = group.state;
    if (state !== undefined) {
      queueMicrotask(() => {
        if (group.listeners.has(listener)) listener(state);
      });
    } else {
      // Some matching entry has no SVID yet (beyond the preload cap, or new): mint now.
      void this.mintDue();
    }
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#subs.remove(group, listener);
    };
  }

  async fetchJwtSvids(
    selectors: readonly Selector[],
    audience: readonly string[],
    signal: AbortSignal,
    select?: (candidates: readonly JwtCandidate[]) => readonly JwtCandidate[],
  ): Promise<JwtIdentity[]> {
    if (!this.#serving()) throw this.#notReady();
    const matched: JwtCandidate[] = this.#entries
      .match(groupKeyOf(selectors).keys)
      .map((e) => ({ entryId: e.id, spiffeId: e.spiffeId, hint: e.hint, createdAt: e.createdAt }));
    // Only the entries the caller will return get a token (SPIRE mints after hint filtering).
    const chosen = select === undefined ? matched : select(matched);
    signal.throwIfAborted();
    return Promise.all(
      chosen.map(async (c) => {
        const jwt = await this.#jwt.get(jwtCacheKey(c.spiffeId, audience), () => this.#opts.minter.newJwtSvid(c.entryId, audience));
        return { entryId: c.entryId, spiffeId: c.spiffeId, hint: c.hint, createdAt: c.createdAt, token: jwt.token };
      }),
    );
  }

  /**
   * The entries a workload with these selectors matches, sorted by entry ID, whether or not
   * their SVIDs are cached (SPIRE's MatchingRegistrationEntries; the admin API authorizes
   * delegates with it).
   */
  matchingEntries(selectors: readonly Selector[]): readonly CachedEntry[] {
    return this.#entries.match(groupKeyOf(selectors).keys);
  }

  bundles(): BundleSnapshot {
    const snapshot = this.#serving() ? this.#bundles.snapshot : undefined;
    if (snapshot === undefined) throw this.#notReady();
    return snapshot;
  }

  subscribeBundles(listener: (bundles: BundleSnapshot) => void): () => void {
    const snapshot = this.bundles();
    this.#bundleListeners.add(listener);
    queueMicrotask(() => {
      if (this.#bundleListeners.has(listener)) listener(this.#bundles.snapshot ?? snapshot);
    });
    return () => this.#bundleListeners.delete(listener);
  }

  #notifyBundles(): void {
    const snapshot = this.#bundles.snapshot;
    if (snapshot === undefined) return;
    for (const listener of [...this.#bundleListeners]) listener(snapshot);
  }

  // ---- introspection ------------------------------------------------------------------

  /** Whether the Workload API is served (synced, or serving a restored cache). */
  get serving(): boolean {
    return this.#serving();
  }

  /**
   * Every entry workloads are matched against now, by ID: the synced ones, or before the first
   * sync those restored from the workload cache (for `debug explain`).
   */
  get matchableEntries(): ReadonlyMap<string, CachedEntry> {
    return this.#entries.byId;
  }

  /** notAfter (ms) of the X509-SVID cached for an entry; undefined when none is. */
  svidExpiry(entryId: string): number | undefined {
    return this.#svids.get(entryId)?.notAfter;
  }

  /** Counts for metrics and tests. */
  stats(): { entries: number; svids: number; jwts: number; subscriptions: number; groups: number } {
    let groups = 0;
    for (const _ of this.#subs.groups()) groups++;
    return { entries: this.#entries.size, svids: this.#svids.size, jwts: this.#jwt.size, subscriptions: this.#subs.listenerCount, groups };
  }

}
