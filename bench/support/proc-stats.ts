/**
 * Readers of a process's memory, CPU time and open file descriptors from /proc, and a
 * periodic memory sampler.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Resident memory in KiB: all of it (VmRSS) and the anonymous part (RssAnon). */
export interface Memory {
  readonly rssKiB: number;
  readonly anonKiB: number;
}

/** A memory reading at a time (ms since the sampler started), with the open fd count. */
export interface MemorySample extends Memory {
  readonly atMs: number;
  readonly fds: number;
}

/** VmRSS and RssAnon of `pid`, or undefined if it has exited. */
export function readMemory(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon') };
}

/** Clock ticks per second (USER_HZ). */
export const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU time of `pid` in ms, or undefined if it has exited. */
export function readCpuMs(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS;
}

/** Number of open file descriptors of `pid`, or undefined if it has exited. */
export function countFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** Samples a process's memory (and fd count) every `intervalMs` until stopped. */
export class MemorySampler {
  readonly samples: MemorySample[] = [];
  readonly #pid: number;
  readonly #start = performance.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(pid: number, intervalMs: number) {
    this.#pid = pid;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Ms since the sampler started. */
  now(): number {
    return performance.now() - this.#start;
  }

  /** Takes a sample now (also called by the timer); returns it, or undefined if the process is gone. */
  sample(): MemorySample | undefined {
    const m = readMemory(this.#pid);
    if (m === undefined) return undefined;
    const s = { atMs: this.now(), ...m, fds: countFds(this.#pid) ?? NaN };
    this.samples.push(s);
    return s;
  }

  /** The sample with the highest RssAnon (and, separately, highest VmRSS) in [fromMs, toMs]. */
  peak(fromMs: number, toMs: number): Memory {
    let rss = 0;
    let anon = 0;
    for (const s of this.samples) {
      if (s.atMs < fromMs || s.atMs > toMs) continue;
      rss = Math.max(rss, s.rssKiB);
      anon = Math.max(anon, s.anonKiB);
    }
    return { rssKiB: rss, anonKiB: anon };
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
