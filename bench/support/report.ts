/**
 * Formatting for benchmark results: percentiles, MiB figures, ratios and markdown tables,
 * plus a run header (date, Node, machine, checkout) and the bare-Node memory baseline.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import type { Checkout } from './cluster.ts';
import { stopChild, trackChild } from './cleanup.ts';
import { readMemory, type Memory } from './proc-stats.ts';

/** The q-quantile (0..1) of unsorted `values`; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

export function max(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => (b > a ? b : a), -Infinity);
}

export function mib(kib: number): string {
  return Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : 'n/a';
}

export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

export function ratio(v: number, base: number): string {
  return Number.isFinite(v) && Number.isFinite(base) && base > 0 ? `${(v / base).toFixed(2)}×` : 'n/a';
}

/** A markdown table. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** One line saying what ran where. */
export function runHeader(checkout: Checkout, extra: string): string {
  const mode = checkout.compiled ? 'COMPILED dist/ (not comparable with a from-source run)' : 'TypeScript sources through Node type stripping';
  return [
    `- date: ${new Date().toISOString()}; Node ${process.version}; ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}); shared machine, figures are noisy (load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' / ')})`,
    `- checkout: ${checkout.dir} @ ${checkout.label}; agent runs ${mode}`,
    `- ${extra}`,
  ].join('\n');
}

/**
 * Memory of a bare Node process from the checkout (an idle timer, nothing loaded), and of one
 * that has loaded @grpc/grpc-js, each read 1.5 s after start.
 */
export async function bareNodeMemory(checkout: Checkout): Promise<{ bare: Memory | undefined; grpc: Memory | undefined }> {
  const measure = async (code: string): Promise<Memory | undefined> => {
    const child = trackChild(spawn(checkout.node, ['-e', code], { cwd: checkout.dir, stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 1_500));
    const m = child.pid === undefined ? undefined : readMemory(child.pid);
    await stopChild(child);
    return m;
  };
  const bare = await measure('setInterval(() => {}, 1 << 30)');
  const grpc = await measure("require('@grpc/grpc-js'); setInterval(() => {}, 1 << 30)");
  return { bare, grpc };
}

/**
 * Warnings and errors in a JSON log text, grouped by message, as
 * "n × level: msg" strings (most frequent first).
 */
export function logSummary(text: string): string[] {
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    const level = /"level":"(warn|error|fatal)"/.exec(line)?.[1];
    if (level === undefined) continue;
    const why = /"(?:reason|error)":"([^"]{0,80})/.exec(line)?.[1];
    const key = `${level}: ${/"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 80)}${why === undefined ? '' : ` (${why})`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} × ${k}`);
}
