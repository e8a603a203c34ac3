/**
 * Text output of `spiffe-agent debug explain` and `debug workloads`. Pure: a response (as
 * the admin API returns it) and the time in, lines out.
 */
import { goCodeName } from '../../common/code-names.ts';
import type { Code } from '../../common/errors.ts';
import { formatGoTimeUtc } from '../../common/go-time.ts';
import type { ExplainResponse__Output } from '../../gen/spiffenodeagent/admin/v1/ExplainResponse.ts';
import type { ExplainedEntry__Output } from '../../gen/spiffenodeagent/admin/v1/ExplainedEntry.ts';
import type { TraceStep__Output } from '../../gen/spiffenodeagent/admin/v1/TraceStep.ts';
import type { Workload__Output } from '../../gen/spiffenodeagent/admin/v1/Workload.ts';

function ms(value: number): string {
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(0)} ms`;
}

function stepLines(steps: readonly TraceStep__Output[], indent: string): string[] {
  const width = Math.max(0, ...steps.map((s) => s.name.length));
  return steps.map((s) => {
    const detail = Object.entries(s.detail)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    return `${indent}${s.name.padEnd(width)}  ${ms(s.duration_ms).padStart(9)}${detail === '' ? '' : `  ${detail}`}`.trimEnd();
  });
}

function ttl(seconds: number): string {
  return seconds === 0 ? 'server default' : `${seconds}s`;
}

/** How long until `at`, e.g. `in 59m58s`, or `expired 3s ago`. */
export function untilText(at: number, now: number): string {
  const total = Math.round(Math.abs(at - now) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const span = `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
  return at >= now ? `in ${span}` : `expired ${span} ago`;
}

function entryLines(e: ExplainedEntry__Output, now: number): string[] {
  const svid = e.svid_expires_at === 0 ? 'not cached yet (minted when a workload asks, or at the next preload)' : `cached, expires ${formatGoTimeUtc(e.svid_expires_at)} (${untilText(e.svid_expires_at, now)})`;
  return [
    `  ${e.spiffe_id}`,
    `    Entry ID   : ${e.entry_id}`,
    ...(e.hint === '' ? [] : [`    Hint       : ${e.hint}`]),
    `    Selectors  : ${e.selectors.join(', ')}`,
    `    TTL        : X509-SVID ${ttl(e.x509_svid_ttl)}, JWT-SVID ${ttl(e.jwt_svid_ttl)}`,
    `    SVID       : ${svid}`,
  ];
}

/** `debug explain` output. */
export function formatExplain(r: ExplainResponse__Output, now: number): string {
  const out: string[] = [];
  if (r.process !== null && r.pid !== 0) {
    out.push(`Process ${r.pid} (uid ${r.process.uid}, gid ${r.process.gid})`, ...stepLines(r.process.steps, '  '), '');
  }
  for (const a of r.attestors) {
    if (a.failed) {
      out.push(`Attestor ${a.plugin} (${ms(a.duration_ms)}): failed: ${goCodeName(a.error_code as Code)}: ${a.error_message}`);
    } else {
      out.push(`Attestor ${a.plugin} (${ms(a.duration_ms)}): ${a.selectors.length} selector${a.selectors.length === 1 ? '' : 's'}`);
    }
    out.push(...stepLines(a.steps, '  '));
    for (const s of a.selectors) out.push(`  ${s.type}:${s.value}`);
    out.push('');
  }
  if (r.attestors.length === 0) {
    out.push(`Selectors (${r.selectors.length}):`, ...r.selectors.map((s) => `  ${s}`), '');
  }
  out.push(r.matched.length === 0 ? 'Matched entries: none' : `Matched entries (${r.matched.length}):`);
  for (const e of r.matched) out.push(...entryLines(e, now));
  if (r.matched_store_svid.length > 0) {
    out.push(`Matched store_svid entries (never served to workloads) (${r.matched_store_svid.length}):`);
    for (const e of r.matched_store_svid) out.push(...entryLines(e, now));
  }
  out.push('');
  if (r.near_misses.length > 0) {
    out.push('Nearest misses:');
    for (const m of r.near_misses) {
      out.push(`  ${m.entry?.spiffe_id ?? ''} (entry ${m.entry?.entry_id ?? ''})`);
      for (const miss of m.missing) {
        out.push(miss.found.length === 0 ? `    entry wants ${miss.wanted}; no selector of that kind was found` : `    ${miss.found.join(', ')} found, entry wants ${miss.wanted}`);
      }
    }
    if (r.more_near_misses > 0) out.push(`  … and ${r.more_near_misses} more`);
    out.push('');
  } else if (r.matched.length === 0) {
    out.push('Nearest misses: none (no entry lacks only one or two of these selectors)', '');
  }
  const v = r.verdict;
  out.push(v === null ? 'Verdict: unknown' : v.code === 0 ? `Verdict: OK (${v.message})` : `Verdict: ${v.code_name} "${v.message}"`);
  return out.join('\n');
}

/** Fixed columns of the `debug workloads` table. */
const COLUMNS = ['PID', 'UID', 'POD', 'CONTAINER', 'STREAMS', 'CALLS', 'ATTEST', 'SENT', 'SVID EXPIRES', 'SPIFFE IDS'] as const;

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `debug workloads` as a table, most recently active first (the server's order). */
export function formatWorkloads(workloads: readonly Workload__Output[], now: number): string {
  const rows = workloads.map((w) => {
    const earliest = w.svid_expiries.length === 0 ? undefined : Math.min(...w.svid_expiries.map((e) => e.expires_at));
    return [
      String(w.pid),
      String(w.uid),
      w.pod !== '' ? w.pod : w.pod_uid !== '' ? w.pod_uid : '-',
      w.container_name !== '' ? w.container_name : w.container_id !== '' ? w.container_id.slice(0, 12) : '-',
      String(w.open_streams),
      String(w.calls),
      w.calls === 0 ? '-' : ms(w.last_attestation_ms),
      bytes(w.bytes_sent),
      earliest === undefined ? '-' : untilText(earliest, now),
      w.spiffe_ids.length === 0 ? '-' : w.spiffe_ids.join(','),
    ];
  });
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ');
  return [`${workloads.length} workload process${workloads.length === 1 ? '' : 'es'} connected`, line(COLUMNS), ...rows.map(line)].join('\n');
}
