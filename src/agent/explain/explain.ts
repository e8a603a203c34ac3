/**
 * `debug explain`: why a process (or a set of selectors) gets the identities it gets. Runs
 * the same attestation the Workload API runs, traced; compares the selectors with every
 * entry the agent holds (nearest-miss.ts); and states the verdict the Workload API would
 * give the caller, in its exact status and message. Changes nothing: no SVID is minted, no
 * subscription made, nothing logged.
 *
 * A pod's container can be named instead of a process (`-podUID U [-container NAME]`): the
 * plugins that know pods (k8s) give its selectors from the kubelet's pod list.
 *
 * For a PID, the process is pinned as the Workload API pins a caller: its start time is read
 * before attestation and checked again after it (the liveness check), so a PID reused
 * meanwhile is reported instead of explained with another process's selectors.
 */
import { goCodeName } from '../../common/code-names.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { selectorKey, type Selector } from '../../common/selector.ts';
import type { CachedEntry } from '../manager/entries.ts';
import type { AttestorReport, TraceStep, WorkloadAttestor } from '../workload-attestation/workload-attestor.ts';
import { explainSelectors, type MissingSelector } from './nearest-miss.ts';

/** What is explained. */
export type ExplainTarget =
  | { readonly pid: number }
  | { readonly podUid: string; readonly containerName?: string }
  | { readonly selectors: readonly Selector[] };

/** What explain reads. All of it is the agent's live state. */
export interface ExplainSources {
  readonly attestor: WorkloadAttestor;
  readonly manager: {
    /** Whether the Workload API serves (synced, or a restored cache). */
    readonly serving: boolean;
    /** Every entry workloads are matched against now (restored ones before the first sync). */
    readonly matchableEntries: ReadonlyMap<string, CachedEntry>;
    /** notAfter (ms) of the entry's cached X509-SVID, if one is cached. */
    svidExpiry(entryId: string): number | undefined;
  };
  /** The process's start time and owner from /proc; an error string when it cannot be read. */
  processFacts(pid: number): { readonly startTime: string; readonly uid: number; readonly gid: number } | string;
  /** Monotonic milliseconds, for step durations. */
  now(): number;
  /** Wall-clock milliseconds, for SVID expiries. */
  wallNow(): number;
}

export interface ExplainedEntry {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  readonly selectors: readonly string[];
  readonly x509SvidTtl: number;
  readonly jwtSvidTtl: number;
  /** The cached X509-SVID's expiry (ISO time), or undefined when none is cached yet. */
  readonly svidExpiresAt: string | undefined;
}

export interface ExplainedNearMiss {
  readonly entry: ExplainedEntry;
  readonly missing: readonly MissingSelector[];
}

/** The Workload API's answer to this caller. */
export interface Verdict {
  readonly code: Code;
  /** As grpc-go names it (what clients print): `OK`, `PermissionDenied`, `Unavailable`. */
  readonly codeName: string;
  readonly message: string;
}

function verdict(code: Code, message: string): Verdict {
  return { code, codeName: goCodeName(code), message };
}

export interface ExplainReport {
  readonly pid: number | undefined;
  /** For a PID: the process as /proc showed it, and the checks that pinned it. */
  readonly process: { readonly uid: number; readonly gid: number; readonly steps: readonly TraceStep[] } | undefined;
  readonly attestors: readonly AttestorReport[];
  /** The selectors entries are matched against (sorted `type:value`). */
  readonly selectors: readonly string[];
  readonly matched: readonly ExplainedEntry[];
  readonly matchedStoreSvid: readonly ExplainedEntry[];
  readonly nearMisses: readonly ExplainedNearMiss[];
  readonly moreNearMisses: number;
  readonly verdict: Verdict;
}

const NO_IDENTITY = verdict(Code.PERMISSION_DENIED, 'no identity issued');
const NOT_SYNCED = verdict(Code.UNAVAILABLE, 'agent is not ready: it has not synchronized with the server yet');
const ATTESTATION_FAILED = verdict(Code.UNAVAILABLE, 'workload attestation failed');

/** Explains `target`. Throws ApiError(NOT_FOUND) for a PID that is not (or no longer) one process. */
export async function explain(sources: ExplainSources, target: ExplainTarget, signal: AbortSignal): Promise<ExplainReport> {
  let attestors: AttestorReport[] = [];
  let selectors: readonly Selector[];
  let process: ExplainReport['process'];
  let pid: number | undefined;
  if ('pid' in target) {
    pid = target.pid;
    const t0 = sources.now();
    const before = sources.processFacts(pid);
    if (typeof before === 'string') throw new ApiError(Code.NOT_FOUND, `process ${pid}: ${before}`);
    const t1 = sources.now();
    attestors = await sources.attestor.explain(pid, signal);
    const t2 = sources.now();
    const after = sources.processFacts(pid);
    const t3 = sources.now();
    if (typeof after === 'string' || after.startTime !== before.startTime) {
      throw new ApiError(Code.NOT_FOUND, `process ${pid} exited during attestation${typeof after === 'string' ? '' : ' and its PID was reused'}; its selectors are not explained`);
    }
    const steps: TraceStep[] = [
      { name: 'process', durationMs: t1 - t0, detail: { source: `/proc/${pid}/stat`, start_time: before.startTime } },
      { name: 'liveness check', durationMs: t3 - t2, detail: { same_process: true } },
    ];
    process = { uid: before.uid, gid: before.gid, steps };
    selectors = attestors.flatMap((a) => a.selectors ?? []);
  } else if ('podUid' in target) {
    attestors = await sources.attestor.explainPod(target.podUid, target.containerName, signal);
    if (attestors.length === 0) throw new ApiError(Code.FAILED_PRECONDITION, 'explaining a pod needs the k8s workload attestor; this agent has none configured');
    const failed = attestors.find((a) => a.error !== undefined);
    if (failed?.error !== undefined && attestors.every((a) => a.error !== undefined)) throw new ApiError(failed.error.code, failed.error.message);
    selectors = attestors.flatMap((a) => a.selectors ?? []);
  } else {
    selectors = target.selectors;
  }

  const { manager } = sources;
  const now = sources.wallNow();
  const describe = (e: CachedEntry): ExplainedEntry => {
    const expiry = manager.svidExpiry(e.id);
    return {
      entryId: e.id,
      spiffeId: e.spiffeId,
      hint: e.hint,
      selectors: e.selectorKeys.slice().sort(),
      x509SvidTtl: e.x509SvidTtl,
      jwtSvidTtl: e.jwtSvidTtl,
      svidExpiresAt: expiry === undefined ? undefined : new Date(expiry).toISOString(),
    };
  };
  const found = explainSelectors(selectors, manager.matchableEntries.values());
  const matched = found.matched.map(describe);
  let answer: Verdict;
  if (!manager.serving) answer = NOT_SYNCED;
  else if (pid !== undefined && attestors.length > 0 && attestors.every((a) => a.error !== undefined)) answer = ATTESTATION_FAILED;
  else if (matched.length === 0) answer = NO_IDENTITY;
  else {
    const pending = matched.filter((e) => e.svidExpiresAt === undefined).length;
    const expired = matched.filter((e) => e.svidExpiresAt !== undefined && Date.parse(e.svidExpiresAt) <= now).length;
    const parts = [`${matched.length} X509-SVID${matched.length === 1 ? '' : 's'}`];
    if (pending > 0) parts.push(`${pending} not cached yet: the first answer waits until the agent has minted them`);
    if (expired > 0) parts.push(`${expired} expired and not rotated yet`);
    answer = verdict(Code.OK, parts.join('; '));
  }
  return {
    pid,
    process,
    attestors,
    selectors: selectors.map(selectorKey).sort(),
    matched,
    matchedStoreSvid: found.matchedStoreSvid.map(describe),
    nearMisses: found.nearMisses.map((m) => ({ entry: describe(m.entry), missing: m.missing })),
    moreNearMisses: found.moreNearMisses,
    verdict: answer,
  };
}
