/**
 * A virtual clock for the k8s attestor's timers (its `TimerClock`): time moves only when a
 * test says so, and {@link settle} lets real I/O (the fake kubelet over HTTPS) run while
 * jumping the clock to the next timer whenever the code under test waits on one.
 */
import type { TimerClock } from '../../src/attestors/workload/k8s/pod-index.ts';

/** A clock tests move by hand; timers fire as time passes them. */
export class ManualTimerClock implements TimerClock {
  #now = 0;
  #timers: Array<{ at: number; callback: () => void; cancelled: boolean }> = [];

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, ms: number): () => void {
    const timer = { at: this.#now + ms, callback, cancelled: false };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** Timers set and neither fired nor cancelled. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing the timers that fall due on the way, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      due.cancelled = true;
      this.#now = Math.max(this.#now, due.at);
      due.callback();
    }
    this.#now = end;
  }

  /** Jumps to the earliest pending timer and fires it; false when none is pending. */
  fireNext(): boolean {
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    const next = this.#timers.sort((a, b) => a.at - b.at).shift();
    if (next === undefined) return false;
    this.#now = Math.max(this.#now, next.at);
    next.callback();
    return true;
  }
}

/** Settles `promise`, letting real I/O run and firing the clock's next timer whenever it waits on one. */
export async function settle<T>(promise: Promise<T>, clock: ManualTimerClock): Promise<T> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 100_000 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done) clock.fireNext();
  }
  return promise;
}
