/**
 * Syscall wrappers: a call interrupted by a signal (EINTR) is tried again, so a pending signal
 * never reads as a failure to identify a caller.
 */
import { closeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EINTR_TRIES, Errno, pidfdExited, pidfdOpen, retryOnEintr, type SyscallResult } from '../../../src/agent/workload-api/libc.ts';

/** An attempt that fails with the given errnos first, then succeeds with `value`. */
function failing(errnos: number[], value = 7): { attempt: () => SyscallResult<number>; calls: () => number } {
  let calls = 0;
  return {
    attempt: () => {
      const errno = errnos[calls++];
      return errno === undefined ? { ok: true, value } : { ok: false, errno };
    },
    calls: () => calls,
  };
}

describe('retryOnEintr', () => {
  it.each([
    { name: 'a first success', errnos: [], result: { ok: true, value: 7 }, calls: 1 },
    { name: 'two EINTRs, then success', errnos: [Errno.EINTR, Errno.EINTR], result: { ok: true, value: 7 }, calls: 3 },
    { name: 'another errno (not retried)', errnos: [Errno.EBADF], result: { ok: false, errno: Errno.EBADF }, calls: 1 },
    { name: 'EINTR, then another errno', errnos: [Errno.EINTR, Errno.ESRCH], result: { ok: false, errno: Errno.ESRCH }, calls: 2 },
    { name: 'EINTR every time (gives up)', errnos: Array.from({ length: EINTR_TRIES + 5 }, () => Errno.EINTR), result: { ok: false, errno: Errno.EINTR }, calls: EINTR_TRIES },
  ])('returns $result after $calls call(s) for $name', ({ errnos, result, calls }) => {
    const f = failing(errnos);
    expect(retryOnEintr(f.attempt)).toEqual(result);
    expect(f.calls()).toBe(calls);
  });
});

describe('pidfdExited', () => {
  it('says a running process has not exited', () => {
    const fd = pidfdOpen(process.pid);
    expect(fd.ok).toBe(true);
    if (!fd.ok) return;
    try {
      expect(pidfdExited(fd.value)).toEqual({ ok: true, value: false });
    } finally {
      closeSync(fd.value);
    }
  });
});
