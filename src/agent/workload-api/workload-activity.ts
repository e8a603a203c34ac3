/**
 * What each process connected to the Workload API is doing now, for `spiffe-agent debug
 * workloads`: its connections and open streams, calls, last attestation (selectors and how
 * long it took), the SPIFFE IDs and SVID expiries of its last X.509 answer, bytes sent.
 *
 * Keyed by PID: a process appears with its first connection and disappears when its last
 * connection closes. Bounded by the per-caller connection limits (one record per process
 * that holds a connection). Every update is a map lookup and a few field writes; nothing is
 * allocated per call except the selector and ID arrays the Workload API already built.
 */
import type { Selector } from '../../common/selector.ts';

/** The part of an X.509 answer's identities the registry reads. */
export interface ServedIdentity {
  readonly spiffeId: string;
  /** Unix seconds. */
  readonly expiresAt: number;
}

/** One process's activity (a snapshot copy: later updates do not change it). */
export interface CallerActivity {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** `pod:<uid>` or `container:<id>` from the caller's cgroup at accept; undefined outside containers. */
  readonly group: string | undefined;
  readonly connections: number;
  readonly openStreams: number;
  readonly calls: number;
  /** Milliseconds the last attestation took; undefined before the first. */
  readonly lastAttestationMs: number | undefined;
  readonly selectors: readonly Selector[];
  /** SPIFFE IDs of the last X.509 answer sent. */
  readonly spiffeIds: readonly string[];
  /** notAfter (wall ms) of those SVIDs, in the same order. */
  readonly svidExpiries: readonly number[];
  readonly bytesSent: number;
  /** Wall-clock ms. */
  readonly connectedAt: number;
  readonly lastActivityAt: number;
}

interface ActivityRecord {
  pid: number;
  uid: number;
  gid: number;
  group: string | undefined;
  connections: number;
  openStreams: number;
  calls: number;
  lastAttestationMs: number | undefined;
  selectors: readonly Selector[];
  served: ServedSummary;
  bytesSent: number;
  connectedAt: number;
  lastActivityAt: number;
}

/** What is kept of an X.509 answer: its SPIFFE IDs and expiries (ms), never the SVIDs or keys themselves. */
interface ServedSummary {
  readonly spiffeIds: readonly string[];
  readonly expiries: readonly number[];
}

const NOTHING_SERVED: ServedSummary = { spiffeIds: [], expiries: [] };

/** The live registry. `now` is wall-clock milliseconds. */
export class WorkloadActivity {
  readonly #now: () => number;
  readonly #byPid = new Map<number, ActivityRecord>();
  /**
   * One summary per answer: every stream of a selector set is sent the same identities array,
   * so it is summarised once, and a record never pins the SVIDs (and keys) of an old answer.
   */
  readonly #summaries = new WeakMap<readonly ServedIdentity[], ServedSummary>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Processes with at least one open connection. */
  get size(): number {
    return this.#byPid.size;
  }

  /** A connection of `pid` was accepted. */
  connected(pid: number, uid: number, gid: number, group: string | undefined): void {
    const now = this.#now();
    const r = this.#byPid.get(pid);
    if (r !== undefined) {
      r.connections++;
      r.lastActivityAt = now;
      return;
    }
    this.#byPid.set(pid, {
      pid,
      uid,
      gid,
      group,
      connections: 1,
      openStreams: 0,
      calls: 0,
      lastAttestationMs: undefined,
      selectors: [],
      served: NOTHING_SERVED,
      bytesSent: 0,
      connectedAt: now,
      lastActivityAt: now,
    });
  }

  /** A connection of `pid` closed; the process disappears with its last one. */
  disconnected(pid: number): void {
    const r = this.#byPid.get(pid);
    if (r === undefined) return;
    if (--r.connections <= 0) this.#byPid.delete(pid);
  }

  /** A call of `pid` was attested (in `ms`) with `selectors`. */
  attested(pid: number, selectors: readonly Selector[], ms: number): void {
    const r = this.#byPid.get(pid);
    if (r === undefined) return;
    r.calls++;
    r.lastAttestationMs = ms;
    r.selectors = selectors;
    r.lastActivityAt = this.#now();
  }

  /** A stream of `pid` opened (+1) or ended (-1). */
  stream(pid: number, delta: 1 | -1): void {
    const r = this.#byPid.get(pid);
    if (r === undefined) return;
    r.openStreams = Math.max(0, r.openStreams + delta);
    r.lastActivityAt = this.#now();
  }

  /** A response of `bytes` went to `pid`. */
  sent(pid: number, bytes: number): void {
    const r = this.#byPid.get(pid);
    if (r === undefined) return;
    r.bytesSent += bytes;
    r.lastActivityAt = this.#now();
  }

  /** An X.509 answer to `pid` carried these identities. */
  served(pid: number, identities: readonly ServedIdentity[]): void {
    const r = this.#byPid.get(pid);
    if (r === undefined) return;
    let summary = this.#summaries.get(identities);
    if (summary === undefined) {
      summary = { spiffeIds: identities.map((i) => i.spiffeId), expiries: identities.map((i) => i.expiresAt * 1000) };
      this.#summaries.set(identities, summary);
    }
    r.served = summary;
  }

  /** Every connected process, most recently active first. */
  list(): CallerActivity[] {
    return [...this.#byPid.values()]
      .map(({ served, ...r }) => ({ ...r, spiffeIds: served.spiffeIds, svidExpiries: served.expiries }))
      .sort((a, b) => b.lastActivityAt - a.lastActivityAt || a.pid - b.pid);
  }
}
