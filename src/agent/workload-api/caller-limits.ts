/**
 * Per-caller limits of the Workload API: how many connections one process and one pod may hold
 * open, and how many calls (streams and unary calls) one caller may have in progress.
 *
 * Why: the socket is open to every pod that mounts it, and each connection and stream costs
 * the agent memory (an HTTP/2 session, stream state, buffers). Without a bound per caller,
 * one pod can push the agent to its memory limit and an OOM-killed agent stops identity for
 * the whole node. The limits are far above what real clients use (go-spiffe, py-spiffe and
 * java-spiffe hold one connection per source with one to three streams; Envoy one connection
 * per cluster) and are answered with ResourceExhausted.
 *
 * A caller's group is its pod (when the cgroup names one), else its container, else the
 * process alone. Pure bookkeeping: no I/O, no clock.
 */

/** The limits; every value is a positive integer. */
export interface CallerLimits {
  /** Open connections per process. */
  readonly connectionsPerProcess: number;
  /** Open connections per pod (or container): all of its processes together. */
  readonly connectionsPerPod: number;
  /** Calls in progress per pod (or per process outside containers). */
  readonly callsPerCaller: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of each connection. */
  readonly streamsPerConnection: number;
}

/** Generous defaults: far above real clients, small enough that a pod cannot exhaust the agent. */
export const DEFAULT_CALLER_LIMITS: CallerLimits = Object.freeze({
  connectionsPerProcess: 32,
  connectionsPerPod: 64,
  callsPerCaller: 1_000,
  streamsPerConnection: 100,
});

/** Which limit refused something (the `limit` label of its metric). */
export type LimitName = 'connections_per_process' | 'connections_per_pod' | 'calls_per_caller';

/** A refusal: which limit, and the ResourceExhausted message for the caller. */
export interface LimitRefusal {
  readonly limit: LimitName;
  readonly message: string;
}

/**
 * What to do with a connection over a connection limit: `answer` it (every call gets the
 * refusal, then it closes; it is counted until then), or `drop` it at once because its caller
 * already has as many refused connections open as it may hold real ones.
 */
export type ConnectionRefusal = LimitRefusal & { readonly action: 'answer' | 'drop' };

/** Who a connection belongs to, for the limits. */
export interface CallerKey {
  readonly pid: number;
  /** `pod:<uid>` or `container:<id>`; undefined for a process outside containers. */
  readonly group: string | undefined;
}

/** Counts of open connections and calls by caller, checked against {@link CallerLimits}. */
export class CallerLedger {
  readonly #limits: CallerLimits;
  readonly #connectionsByPid = new Map<number, number>();
  readonly #connectionsByGroup = new Map<string, number>();
  readonly #callsByCaller = new Map<string, number>();
  /** Refused connections still open (being answered), by caller. */
  readonly #refusedByCaller = new Map<string, number>();

  constructor(limits: CallerLimits = DEFAULT_CALLER_LIMITS) {
    this.#limits = limits;
  }

  /**
   * Counts a new connection, or says which limit it would pass and what to do with it. Either
   * way, {@link closeConnection} releases what was counted.
   */
  openConnection(key: CallerKey): ConnectionRefusal | undefined {
    const over = this.#overLimit(key);
    if (over === undefined) return undefined;
    const caller = callerOf(key);
    const refused = this.#refusedByCaller.get(caller) ?? 0;
    // Answering costs a connection's worth of memory: past the limit again, drop at once.
    if (refused >= this.#limits.connectionsPerPod) return { ...over, action: 'drop' };
    this.#refusedByCaller.set(caller, refused + 1);
    return { ...over, action: 'answer' };
  }

  #overLimit(key: CallerKey): LimitRefusal | undefined {
    const byPid = this.#connectionsByPid.get(key.pid) ?? 0;
    if (byPid >= this.#limits.connectionsPerProcess) {
      return {
        limit: 'connections_per_process',
        message: `workload api: too many connections from this process (${this.#limits.connectionsPerProcess} open); reuse one connection for all calls`,
      };
    }
    const byGroup = key.group === undefined ? 0 : (this.#connectionsByGroup.get(key.group) ?? 0);
    if (key.group !== undefined && byGroup >= this.#limits.connectionsPerPod) {
      return {
        limit: 'connections_per_pod',
        message: `workload api: too many connections from this pod (${this.#limits.connectionsPerPod} open); reuse one connection per process`,
      };
    }
    this.#connectionsByPid.set(key.pid, byPid + 1);
    if (key.group !== undefined) this.#connectionsByGroup.set(key.group, byGroup + 1);
    return undefined;
  }

  /** Forgets a connection {@link openConnection} counted (`refused`: it answered with a refusal). */
  closeConnection(key: CallerKey, refused: boolean): void {
    if (refused) {
      decrement(this.#refusedByCaller, callerOf(key));
      return;
    }
    decrement(this.#connectionsByPid, key.pid);
    if (key.group !== undefined) decrement(this.#connectionsByGroup, key.group);
  }

  /** Counts a call in progress and returns its release (idempotent), or the refusal. */
  startCall(key: CallerKey): (() => void) | LimitRefusal {
    const caller = callerOf(key);
    const calls = this.#callsByCaller.get(caller) ?? 0;
    if (calls >= this.#limits.callsPerCaller) {
      return {
        limit: 'calls_per_caller',
        message: `workload api: too many calls in progress from this ${key.group === undefined ? 'process' : 'pod'} (${this.#limits.callsPerCaller}); one stream per source is enough`,
      };
    }
    this.#callsByCaller.set(caller, calls + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      decrement(this.#callsByCaller, caller);
    };
  }
}

/** The caller a key's calls and refusals count against: its pod (or container), else the process. */
function callerOf(key: CallerKey): string {
  return key.group ?? `pid:${key.pid}`;
}

function decrement<K>(map: Map<K, number>, key: K): void {
  const n = map.get(key);
  if (n === undefined) return;
  if (n <= 1) map.delete(key);
  else map.set(key, n - 1);
}
