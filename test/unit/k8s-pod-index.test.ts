import { describe, expect, it } from 'vitest';
import { createPodIndex, type PodIndex } from '../../src/attestors/workload/k8s/pod-index.ts';
import { ManualTimerClock } from '../support/manual-timer-clock.ts';
import { ApiError, Code } from '../../src/common/errors.ts';

/** A fetcher whose requests the test answers by hand. */
function manualFetcher(): {
  fetch: (signal: AbortSignal) => Promise<string>;
  pending: Array<{ resolve: (text: string) => void; reject: (err: unknown) => void; signal: AbortSignal }>;
} {
  const pending: Array<{ resolve: (text: string) => void; reject: (err: unknown) => void; signal: AbortSignal }> = [];
  return {
    pending,
    fetch: (signal) => new Promise<string>((resolve, reject) => pending.push({ resolve, reject, signal })),
  };
}

const list = (...uids: string[]): string =>
  JSON.stringify({ items: uids.map((uid) => ({ metadata: { uid, name: uid, namespace: 'ns' }, status: { phase: 'Running' } })) });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const live = (): AbortSignal => new AbortController().signal;

function setup(minIntervalMs = 500): { clock: ManualTimerClock; fetcher: ReturnType<typeof manualFetcher>; index: PodIndex } {
  const clock = new ManualTimerClock();
  const fetcher = manualFetcher();
  return { clock, fetcher, index: createPodIndex({ fetchPodList: fetcher.fetch, minIntervalMs, clock }) };
}

describe('shared pod index', () => {
  it('concurrent callers share one request and one snapshot', async () => {
    const { fetcher, index } = setup();
    const waits = Array.from({ length: 50 }, () => index.next(0, live()));
    await tick();
    expect(fetcher.pending).toHaveLength(1);
    fetcher.pending[0]!.resolve(list('a'));
    const snapshots = await Promise.all(waits);
    expect(new Set(snapshots).size).toBe(1);
    expect(snapshots[0]!.generation).toBe(1);
    expect(index.fetches).toBe(1);
  });

  it('serves a fresh snapshot to callers that have not seen it, without a request', async () => {
    const { clock, fetcher, index } = setup();
    const first = index.next(0, live());
    await tick();
    fetcher.pending[0]!.resolve(list('a'));
    await first;
    clock.advance(499);
    expect(index.peek(0)?.generation).toBe(1);
    await expect(index.next(0, live())).resolves.toMatchObject({ generation: 1 });
    expect(index.fetches).toBe(1);
    clock.advance(1);
    expect(index.peek(0)).toBeUndefined();
  });

  it('a caller that saw generation N waits for the next paced fetch instead of refetching', async () => {
    const { clock, fetcher, index } = setup();
    const first = index.next(0, live());
    await tick();
    fetcher.pending.shift()!.resolve(list('a'));
    await first;
    clock.advance(100);
    let settled = false;
    const second = index.next(1, live()).then((s) => ((settled = true), s));
    await tick();
    expect(fetcher.pending).toHaveLength(0); // not before the minimum interval
    clock.advance(399);
    await tick();
    expect(fetcher.pending).toHaveLength(0);
    clock.advance(1);
    await tick();
    expect(fetcher.pending).toHaveLength(1);
    expect(settled).toBe(false);
    fetcher.pending.shift()!.resolve(list('a', 'b'));
    const s = await second;
    expect(s.generation).toBe(2);
    expect([...s.pods.keys()]).toEqual(['a', 'b']);
  });

  it('never starts a second request while one is in flight', async () => {
    const { clock, fetcher, index } = setup(100);
    const first = index.next(0, live());
    await tick();
    clock.advance(10_000); // the request hangs far beyond the interval
    const second = index.next(0, live());
    await tick();
    expect(fetcher.pending).toHaveLength(1);
    fetcher.pending.shift()!.resolve(list('a'));
    await expect(Promise.all([first, second])).resolves.toHaveLength(2);
    expect(index.fetches).toBe(1);
  });

  it('a failed fetch rejects its waiters, keeps the snapshot, and the retry is paced', async () => {
    const { clock, fetcher, index } = setup();
    const first = index.next(0, live());
    await tick();
    fetcher.pending.shift()!.resolve(list('a'));
    await first;
    clock.advance(600);
    const failing = index.next(1, live());
    await tick();
    fetcher.pending.shift()!.reject(new ApiError(Code.UNAVAILABLE, 'kubelet: boom'));
    await expect(failing).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: 'kubelet: boom' });
    expect(index.peek(0)).toBeUndefined(); // stale, but still generation 1 underneath
    const retry = index.next(1, live());
    await tick();
    expect(fetcher.pending).toHaveLength(0);
    clock.advance(500);
    await tick();
    fetcher.pending.shift()!.resolve(list('a'));
    await expect(retry).resolves.toMatchObject({ generation: 2 });
  });

  it('an unparseable response is an Unavailable error', async () => {
    const { fetcher, index } = setup();
    const waiting = index.next(0, live());
    await tick();
    fetcher.pending.shift()!.resolve('<html>');
    await expect(waiting).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: expect.stringContaining('kubelet: unable to parse') });
  });

  it('an aborted waiter is rejected at once and its pending start is dropped', async () => {
    const { clock, fetcher, index } = setup();
    const first = index.next(0, live());
    await tick();
    fetcher.pending.shift()!.resolve(list('a'));
    await first;
    const controller = new AbortController();
    const waiting = index.next(1, controller.signal);
    await tick();
    expect(clock.pendingTimers).toBe(1);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(clock.pendingTimers).toBe(0);
    clock.advance(1000);
    await tick();
    expect(index.fetches).toBe(1);
  });

  it('close rejects waiters, aborts the request and refuses new callers', async () => {
    const { fetcher, index } = setup();
    const waiting = index.next(0, live());
    await tick();
    index.close();
    await expect(waiting).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(fetcher.pending[0]!.signal.aborted).toBe(true);
    await expect(index.next(0, live())).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });
});

describe('pod index: background recheck of a refusing kubelet', () => {
  const refused = (): ApiError => new ApiError(Code.PERMISSION_DENIED, 'kubelet: 403');
  function rechecking(intervalMs = 10_000, minIntervalMs = 500): { clock: ManualTimerClock; fetcher: ReturnType<typeof manualFetcher>; index: PodIndex } {
    const clock = new ManualTimerClock();
    const fetcher = manualFetcher();
    const when = (err: ApiError): boolean => err.code === Code.PERMISSION_DENIED;
    return { clock, fetcher, index: createPodIndex({ fetchPodList: fetcher.fetch, minIntervalMs, clock, recheck: { intervalMs, when } }) };
  }
  /** Fails the caller-driven first fetch with `err`. */
  async function failFirst(index: PodIndex, fetcher: ReturnType<typeof manualFetcher>, err: ApiError): Promise<void> {
    const first = index.next(0, live()).catch((e: unknown) => e);
    await tick();
    fetcher.pending.shift()!.reject(err);
    expect(await first).toBe(err);
  }

  it('asks again every interval with nobody waiting until the kubelet answers, then stops', async () => {
    const { clock, fetcher, index } = rechecking();
    await failFirst(index, fetcher, refused());
    clock.advance(9_999);
    await tick();
    expect(fetcher.pending).toHaveLength(0);
    clock.advance(1);
    await tick();
    expect([fetcher.pending.length, index.fetches]).toEqual([1, 2]);
    fetcher.pending.shift()!.reject(refused());
    await tick();
    clock.advance(10_000);
    await tick();
    expect([fetcher.pending.length, index.fetches]).toEqual([1, 3]);
    fetcher.pending.shift()!.resolve(list('a'));
    await tick();
    expect(index.peek(0)?.generation).toBe(1);
    expect(clock.pendingTimers).toBe(0);
    clock.advance(60_000);
    await tick();
    expect(index.fetches).toBe(3);
  });

  it('does not recheck failures it was not asked to (an unreachable kubelet)', async () => {
    const { clock, fetcher, index } = rechecking();
    await failFirst(index, fetcher, new ApiError(Code.UNAVAILABLE, 'kubelet: ECONNREFUSED'));
    clock.advance(60_000);
    await tick();
    expect([fetcher.pending.length, index.fetches, clock.pendingTimers]).toEqual([0, 1, 0]);
  });

  it('a request a caller made meanwhile pushes the recheck back a full interval', async () => {
    const { clock, fetcher, index } = rechecking();
    await failFirst(index, fetcher, refused());
    clock.advance(6_000);
    const caller = index.next(0, live()).catch((e: unknown) => e);
    await tick();
    fetcher.pending.shift()!.reject(refused());
    await caller;
    clock.advance(9_999);
    await tick();
    expect([fetcher.pending.length, index.fetches]).toEqual([0, 2]);
    clock.advance(1);
    await tick();
    expect([fetcher.pending.length, index.fetches]).toEqual([1, 3]);
  });

  it('close cancels the pending recheck', async () => {
    const { clock, fetcher, index } = rechecking();
    await failFirst(index, fetcher, refused());
    expect(clock.pendingTimers).toBe(1);
    index.close();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(60_000);
    await tick();
    expect(index.fetches).toBe(1);
  });
});
