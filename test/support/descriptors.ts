/**
 * Runs test code with this process at its open-files limit: the soft RLIMIT_NOFILE is lowered
 * (real prlimit(1) on our own pid), every free descriptor is taken, `spare` are given back,
 * `fn` runs, and everything is restored whatever happens. `fn` must not wait for a test
 * timeout: bound any wait inside it, or the descriptors stay taken until it returns.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

/** The soft limit used while descriptors are exhausted (small, so filling it is quick). */
const LOW_SOFT_LIMIT = 1024;

export async function withDescriptorsExhausted<T>(spare: number, fn: () => T | Promise<T>): Promise<T> {
  const pid = String(process.pid);
  const [soft, hard] = execFileSync('prlimit', ['--pid', pid, '--nofile', '--raw', '--noheadings', '--output', 'SOFT,HARD'], { encoding: 'utf8' })
    .trim()
    .split(/\s+/);
  const filler: number[] = [];
  try {
    execFileSync('prlimit', ['--pid', pid, `--nofile=${LOW_SOFT_LIMIT}:${hard}`]);
    for (;;) {
      try {
        filler.push(openSync('/dev/null', 'r'));
      } catch {
        break;
      }
    }
    for (let i = 0; i < spare; i++) closeSync(filler.pop() as number);
    return await fn();
  } finally {
    for (const fd of filler) closeSync(fd);
    execFileSync('prlimit', ['--pid', pid, `--nofile=${soft}:${hard}`]);
  }
}
