/**
 * Oversized-frame stall (issue 9 item 1): K raw Unix-socket connections each send the HTTP/2
 * client preface, an empty SETTINGS frame and a frame header announcing a 16 MiB HEADERS (or
 * DATA) payload, then stream payload bytes as fast as the socket takes them (or at --rate
 * bytes/s) for --seconds. Meanwhile a legitimate client (its own process) fetches
 * FetchX509SVID every 10 ms on an existing connection and every 100 ms on a new connection;
 * its latency during the attack is compared with the same client's before the attack.
 *
 *   node bench/frame-stall.ts [--checkout DIR] [--connections 32] [--frame headers|data]
 *       [--rate 0] [--seconds 5] [--reconnect] [--baseline 5] [--recovery 5]
 *       [--idle-connections 100] [--idle-hold 1.5]
 *
 * Also measured, before the attack: the fds and memory the agent holds per idle connection
 * (100 connections that send only the preface and SETTINGS), and whether the agent closes a
 * connection that sends the preface then junk, or junk without a preface (and how fast).
 *
 * --checkout runs DIR/bin/spiffe-{server,agent}.js with DIR/node_modules/.bin/node (default:
 * this repo), so an older commit's worktree is measured the same way.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cleanupAll, stopChild, trackChild } from './support/cleanup.ts';
import { resolveCheckout, startCluster } from './support/cluster.ts';
import { errorKind, fetchFirst, newClient } from './support/fetch-client.ts';
import { MemorySampler, countFds, readCpuMs, type Memory } from './support/proc-stats.ts';
import {
  EMPTY_SETTINGS,
  FLAG_END_HEADERS,
  FRAME_DATA,
  FRAME_HEADERS,
  MAX_FRAME_LENGTH,
  PREFACE,
  closeRaw,
  epochMs,
  frameHeader,
  openRaw,
  type RawConnection,
} from './support/raw-http2.ts';
import { logSummary, max, mib, ms, quantile, ratio, runHeader, table } from './support/report.ts';

const { values: args } = parseArgs({
  options: {
    checkout: { type: 'string' },
    connections: { type: 'string', default: '32' },
    frame: { type: 'string', default: 'headers' },
    length: { type: 'string', default: String(MAX_FRAME_LENGTH) },
    rate: { type: 'string', default: '0' },
    seconds: { type: 'string', default: '5' },
    reconnect: { type: 'boolean', default: false },
    baseline: { type: 'string', default: '5' },
    recovery: { type: 'string', default: '5' },
    'idle-connections': { type: 'string', default: '100' },
    'idle-hold': { type: 'string', default: '1.5' },
    role: { type: 'string' },
    socket: { type: 'string' },
  },
  strict: true,
});

// ---------------------------------------------------------------- legitimate client (child)

/** One fetch: when it started (epoch ms), how long it took, and how it failed if it did. */
interface Sample {
  readonly at: number;
  readonly ms: number;
  readonly error?: string;
}

interface LegitReport {
  readonly type: 'legit';
  readonly existing: Sample[];
  readonly fresh: Sample[];
}

async function runLegit(socketPath: string): Promise<void> {
  process.on('disconnect', () => process.exit(0));
  let stopping = false;
  const existing: Sample[] = [];
  const fresh: Sample[] = [];
  const inFlight = new Map<symbol, { at: number; t0: number; into: Sample[] }>();
  const timed = async (into: Sample[], op: () => Promise<unknown>): Promise<number> => {
    const key = Symbol('fetch');
    const t0 = performance.now();
    const at = epochMs();
    inFlight.set(key, { at, t0, into });
    try {
      await op();
      into.push({ at, ms: performance.now() - t0 });
    } catch (err) {
      into.push({ at, ms: performance.now() - t0, error: errorKind(err) });
    } finally {
      inFlight.delete(key);
    }
    return performance.now() - t0;
  };
  const client = newClient(socketPath);
  for (let i = 0; i < 50; i++) await fetchFirst(client, 10_000);
  const existingLoop = (async () => {
    while (!stopping) {
      const took = await timed(existing, () => fetchFirst(client, 60_000));
      await new Promise((r) => setTimeout(r, Math.max(0, 10 - took)));
    }
  })();
  const freshLoop = (async () => {
    while (!stopping) {
      const took = await timed(fresh, async () => {
        const c = newClient(socketPath);
        try {
          await fetchFirst(c, 60_000);
        } finally {
          c.close();
        }
      });
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - took)));
    }
  })();
  process.send?.({ type: 'ready' });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  stopping = true;
  // Fetches stuck for over a second count with the time they have waited so far; younger
  // ones were merely cut off by the stop.
  for (const f of inFlight.values()) {
    const waited = performance.now() - f.t0;
    if (waited > 1_000) f.into.push({ at: f.at, ms: waited, error: 'still pending at the end' });
  }
  const report: LegitReport = { type: 'legit', existing, fresh };
  process.send?.(report, () => process.exit(0));
  void existingLoop;
  void freshLoop;
}

// ---------------------------------------------------------------- attacker (child)

/** One attack connection: when its oversized frame header went out, how far it got, how it ended. */
interface AttackRecord {
  headerAt: number;
  acceptedBytes: number;
  closedByAgentAt: number | undefined;
  goawayCode: number | undefined;
  error: string | undefined;
  connectError?: string;
}

interface AttackReport {
  readonly type: 'attack';
  readonly startedAt: number;
  readonly endedAt: number;
  readonly records: AttackRecord[];
}

async function runAttack(socketPath: string, k: number, frameType: number, length: number, rate: number, seconds: number, reconnect: boolean): Promise<void> {
  process.on('disconnect', () => process.exit(0));
  const records: AttackRecord[] = [];
  const open = new Set<RawConnection>();
  const zeros = Buffer.alloc(64 * 1024);
  let stopping = false;
  const header = frameHeader(length, frameType, frameType === FRAME_HEADERS ? FLAG_END_HEADERS : 0, 1);

  const attackOne = async (): Promise<void> => {
    let conn: RawConnection;
    try {
      conn = await openRaw(socketPath);
    } catch (err) {
      records.push({ headerAt: epochMs(), acceptedBytes: 0, closedByAgentAt: epochMs(), goawayCode: undefined, error: undefined, connectError: (err as Error).message });
      return;
    }
    open.add(conn);
    const rec: AttackRecord = { headerAt: NaN, acceptedBytes: 0, closedByAgentAt: undefined, goawayCode: undefined, error: undefined };
    records.push(rec);
    conn.socket.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
    conn.socket.write(header);
    rec.headerAt = epochMs();
    let remaining = length;
    let ticker: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (ticker !== undefined) clearInterval(ticker);
      open.delete(conn);
      rec.closedByAgentAt = conn.closedByPeerAt;
      rec.goawayCode = conn.reader.goawayCode;
      rec.error = conn.error;
      if (reconnect && !stopping) void attackOne();
    };
    conn.socket.once('close', finish);
    const writeChunk = (n: number): boolean => {
      remaining -= n;
      return conn.socket.write(zeros.subarray(0, n), (err) => {
        if (err === undefined || err === null) rec.acceptedBytes += n;
      });
    };
    if (rate <= 0) {
      // As fast as the socket takes them: write until the buffer is full, continue on drain.
      const pump = (): void => {
        while (!stopping && remaining > 0 && !conn.socket.destroyed) {
          if (!writeChunk(Math.min(zeros.length, remaining))) {
            conn.socket.once('drain', pump);
            return;
          }
        }
      };
      pump();
    } else {
      const perTick = Math.max(1, Math.floor(rate / 20));
      ticker = setInterval(() => {
        if (stopping || remaining <= 0 || conn.socket.destroyed) return;
        writeChunk(Math.min(perTick, remaining, zeros.length));
      }, 50);
    }
  };

  const startedAt = epochMs();
  await Promise.all(Array.from({ length: k }, () => attackOne()));
  await new Promise((r) => setTimeout(r, seconds * 1_000));
  stopping = true;
  for (const conn of open) closeRaw(conn);
  await new Promise((r) => setTimeout(r, 50));
  const report: AttackReport = { type: 'attack', startedAt, endedAt: epochMs(), records };
  process.send?.(report, () => process.exit(0));
}

// ---------------------------------------------------------------- coordinator

function forkRole(role: string, extra: string[]): ChildProcess {
  return trackChild(fork(import.meta.filename, ['--role', role, ...extra], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
}

function nextMessage<T>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench: no '${type}' message within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: { type: string }): void => {
      if (m.type !== type) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(m as T);
    };
    child.on('message', onMessage);
    child.once('close', (code) => reject(new Error(`bench: ${type} process exited with ${code}`)));
  });
}

const sleep = (msDelay: number): Promise<void> => new Promise((r) => setTimeout(r, msDelay));

/** Opens n connections that send only the preface and an empty SETTINGS frame. */
async function idleConnections(socketPath: string, n: number): Promise<RawConnection[]> {
  const conns: RawConnection[] = [];
  for (let i = 0; i < n; i++) {
    const c = await openRaw(socketPath);
    c.socket.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
    conns.push(c);
  }
  return conns;
}

/** Sends `bytes` on a new connection; resolves with ms until the agent closed it, or undefined after `waitMs`. */
async function probe(socketPath: string, bytes: Buffer, waitMs: number): Promise<{ closedAfterMs: number | undefined; goaway: number | undefined; error: string | undefined }> {
  const c = await openRaw(socketPath);
  const sentAt = epochMs();
  c.socket.write(bytes);
  const deadline = sentAt + waitMs;
  while (c.closedByPeerAt === undefined && epochMs() < deadline) await sleep(5);
  const closedAfterMs = c.closedByPeerAt === undefined ? undefined : c.closedByPeerAt - sentAt;
  closeRaw(c);
  return { closedAfterMs, goaway: c.reader.goawayCode, error: c.error };
}

function latencyRows(label: string, base: Sample[], phases: readonly (readonly [string, Sample[]])[]): string[][] {
  const ok = (xs: Sample[]): number[] => xs.filter((s) => s.error === undefined).map((s) => s.ms);
  const all = (xs: Sample[]): number[] => xs.map((s) => s.ms);
  const b50 = quantile(ok(base), 0.5);
  const b99 = quantile(ok(base), 0.99);
  return phases.map(([phase, xs]) => {
    const failed = xs.filter((s) => s.error !== undefined);
    const kinds = [...new Set(failed.map((s) => s.error))].slice(0, 2).join('; ');
    return [
      `${label}: ${phase}`,
      String(xs.length),
      ms(quantile(ok(xs), 0.5)),
      ms(quantile(ok(xs), 0.99)),
      ms(max(all(xs))),
      `${ratio(quantile(ok(xs), 0.5), b50)} / ${ratio(quantile(ok(xs), 0.99), b99)}`,
      failed.length === 0 ? '0' : `${failed.length} (${kinds})`,
    ];
  });
}

async function main(): Promise<void> {
  const k = Number(args.connections);
  const frameName = args.frame === 'data' ? 'DATA' : 'HEADERS';
  const length = Number(args.length);
  const rate = Number(args.rate);
  const attackSeconds = Number(args.seconds);
  const idleN = Number(args['idle-connections']);
  const idleHoldMs = Number(args['idle-hold']) * 1_000;
  const checkout = await resolveCheckout(args.checkout);
  process.stderr.write(`frame-stall: ${checkout.dir} @ ${checkout.label}; ${k} × ${frameName} ${length} B, ${rate > 0 ? `${rate} B/s` : 'as fast as the socket takes'}, ${attackSeconds} s\n`);
  const cluster = await startCluster(checkout);
  const pid = cluster.agentPid;
  const sampler = new MemorySampler(pid, 100);
  await sleep(2_000);

  // 1. fds and memory per idle connection.
  process.stderr.write('frame-stall: idle connections\n');
  const fds0 = countFds(pid) ?? NaN;
  const mem0 = sampler.sample();
  const idle = await idleConnections(cluster.socketPath, idleN);
  await sleep(idleHoldMs);
  const fds1 = countFds(pid) ?? NaN;
  const mem1 = sampler.sample();
  const idleStillOpen = idle.filter((c) => c.closedByPeerAt === undefined).length;
  for (const c of idle) closeRaw(c);
  await sleep(1_500);
  const fds2 = countFds(pid) ?? NaN;

  // 2. Junk probes.
  process.stderr.write('frame-stall: junk probes\n');
  const [prefaceJunk, plainJunk] = await Promise.all([
    probe(cluster.socketPath, Buffer.concat([PREFACE, Buffer.from('x'.repeat(256))]), 10_000),
    probe(cluster.socketPath, Buffer.from('GET / HTTP/1.1\r\nHost: agent\r\n\r\n'), 10_000),
  ]);
  const afterProbes = countFds(pid) ?? NaN;

  // 3. Legitimate client: baseline, attack, recovery.
  process.stderr.write('frame-stall: legit client baseline\n');
  const legit = forkRole('legit', ['--socket', cluster.socketPath]);
  await nextMessage(legit, 'ready', 60_000);
  const legitStart = epochMs();
  await sleep(Number(args.baseline) * 1_000);

  process.stderr.write('frame-stall: attack\n');
  const logStart = readFileSync(cluster.agentLog, 'utf8').length;
  const before = sampler.sample() ?? { rssKiB: NaN, anonKiB: NaN, fds: NaN, atMs: NaN };
  const cpu0 = readCpuMs(pid) ?? NaN;
  const attackWindowStart = sampler.now();
  const attacker = forkRole('attack', [
    '--socket', cluster.socketPath,
    '--connections', String(k),
    '--frame', args.frame === 'data' ? 'data' : 'headers',
    '--length', String(length),
    '--rate', String(rate),
    '--seconds', String(attackSeconds),
    ...(args.reconnect ? ['--reconnect'] : []),
  ]);
  const attack = await nextMessage<AttackReport>(attacker, 'attack', (attackSeconds + 120) * 1_000);
  await stopChild(attacker);
  const cpu1 = readCpuMs(pid) ?? NaN;
  const attackWindowEnd = sampler.now();
  process.stderr.write('frame-stall: recovery\n');
  await sleep(Number(args.recovery) * 1_000);
  const after = sampler.sample() ?? { rssKiB: NaN, anonKiB: NaN, fds: NaN, atMs: NaN };
  const legitEnd = epochMs();
  legit.send({ type: 'stop' });
  const legitReport = await nextMessage<LegitReport>(legit, 'legit', 30_000);
  await stopChild(legit);
  const peak: Memory = sampler.peak(attackWindowStart, sampler.now());
  const peakFds = max(sampler.samples.filter((s) => s.atMs >= attackWindowStart).map((s) => s.fds));
  sampler.stop();
  const agentAlive = cluster.agent.exitCode === null && cluster.agent.signalCode === null;
  const warnings = logSummary(readFileSync(cluster.agentLog, 'utf8').slice(logStart));
  await cluster.stop();

  // Phases of the legitimate client's samples, by when each fetch started.
  const inPhase = (xs: Sample[], from: number, to: number): Sample[] => xs.filter((s) => s.at >= from && s.at < to);
  const phasesOf = (xs: Sample[]): (readonly [string, Sample[]])[] => [
    ['before the attack (baseline)', inPhase(xs, legitStart, attack.startedAt)],
    ['during the attack', inPhase(xs, attack.startedAt, attack.endedAt)],
    ['after the attack', inPhase(xs, attack.endedAt, legitEnd)],
  ];
  const existingPhases = phasesOf(legitReport.existing);
  const freshPhases = phasesOf(legitReport.fresh);

  const recs = attack.records;
  const closed = recs.filter((r) => r.closedByAgentAt !== undefined && r.connectError === undefined);
  const closeTimes = closed.map((r) => (r.closedByAgentAt as number) - r.headerAt);
  const goaways = new Map<string, number>();
  for (const r of closed) {
    const key = r.goawayCode === undefined ? (r.error ?? 'no GOAWAY') : `GOAWAY ${r.goawayCode}`;
    goaways.set(key, (goaways.get(key) ?? 0) + 1);
  }
  const accepted = recs.map((r) => r.acceptedBytes);
  const connectErrors = recs.filter((r) => r.connectError !== undefined);

  const memRow = (label: string, m: Memory, fds: number): string[] => [label, mib(m.rssKiB), mib(m.anonKiB), ratio(m.anonKiB, before.anonKiB), String(fds)];
  const probeCell = (p: { closedAfterMs: number | undefined; goaway: number | undefined; error: string | undefined }): string =>
    p.closedAfterMs === undefined ? 'NOT closed within 10 s' : `closed after ${ms(p.closedAfterMs)}${p.goaway === undefined ? '' : ` (GOAWAY ${p.goaway})`}${p.error === undefined ? '' : ` (${p.error})`}`;
  const out = [
    `### Oversized-frame stall (\`bench/frame-stall.ts\`): ${k} connections × ${frameName} frame header of ${length.toLocaleString('en')} B, ${rate > 0 ? `${rate} B/s each` : 'payload as fast as the socket takes it'}, ${attackSeconds} s${args.reconnect ? ', reconnecting' : ''}`,
    '',
    runHeader(checkout, 'legit client in its own process: FetchX509SVID every 10 ms on one existing connection, and every 100 ms on a new connection; attacker in another process'),
    '',
    table(
      ['agent memory', 'VmRSS', 'RssAnon', 'RssAnon vs before', 'open fds'],
      [
        memRow('before the attack', before, before.fds),
        memRow('peak (attack + recovery)', peak, peakFds),
        memRow(`${args.recovery} s after the attack`, after, after.fds),
      ],
    ),
    '',
    table(
      ['legit FetchX509SVID latency', 'fetches', 'p50', 'p99', 'max', 'p50 / p99 vs baseline', 'failed'],
      [...latencyRows('existing connection', existingPhases[0]?.[1] ?? [], existingPhases), ...latencyRows('new connection', freshPhases[0]?.[1] ?? [], freshPhases)],
    ),
    '',
    table(
      ['attack connections', 'value'],
      [
        ['opened', `${recs.length - connectErrors.length}${connectErrors.length > 0 ? ` (+${connectErrors.length} failed to connect: ${connectErrors[0]?.connectError ?? ''})` : ''}`],
        ['closed by the agent during the attack', `${closed.length} of ${recs.length - connectErrors.length}`],
        ['time from oversized frame header to close: min / p50 / max', closed.length === 0 ? 'n/a' : `${ms(Math.min(...closeTimes))} / ${ms(quantile(closeTimes, 0.5))} / ${ms(max(closeTimes))}`],
        ['how they were closed', [...goaways].map(([kind, n]) => `${n} × ${kind}`).join('; ') || 'n/a'],
        ['payload bytes the agent accepted per connection: p50 / max', `${quantile(accepted, 0.5).toLocaleString('en')} / ${max(accepted).toLocaleString('en')} B`],
        ['agent CPU during the attack', `${(cpu1 - cpu0).toFixed(0)} ms over ${((attack.endedAt - attack.startedAt) / 1_000).toFixed(1)} s`],
        ['agent alive at the end', agentAlive ? 'yes' : `NO (exit ${cluster.agent.exitCode ?? cluster.agent.signalCode})`],
        ['agent WARN/ERROR log lines from the attack on', warnings.length === 0 ? 'none' : warnings.slice(0, 4).join('; ')],
      ],
    ),
    '',
    table(
      ['probe', 'result'],
      [
        [`${idleN} idle connections (preface + empty SETTINGS, then nothing): agent fds`, `${fds0} → ${fds1} (${((fds1 - fds0) / idleN).toFixed(2)} fds per connection); ${fds2} after closing them`],
        [`${idleN} idle connections: agent RssAnon`, mem0 !== undefined && mem1 !== undefined ? `${mib(mem0.anonKiB)} → ${mib(mem1.anonKiB)} (${((mem1.anonKiB - mem0.anonKiB) / idleN).toFixed(1)} KiB per connection)` : 'n/a'],
        [`${idleN} idle connections: still open after ${idleHoldMs / 1_000} s`, `${idleStillOpen} of ${idleN}`],
        ['preface + 256 B of junk ("xxx…": a 7.9 MB frame of unknown type)', probeCell(prefaceJunk)],
        ['no preface: an HTTP/1.1 GET', probeCell(plainJunk)],
        ['agent fds after the probes', String(afterProbes)],
      ],
    ),
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

if (args.role === 'legit') {
  await runLegit(args.socket ?? '');
} else if (args.role === 'attack') {
  await runAttack(args.socket ?? '', Number(args.connections), args.frame === 'data' ? FRAME_DATA : FRAME_HEADERS, Number(args.length), Number(args.rate), Number(args.seconds), args.reconnect ?? false);
} else {
  try {
    await main();
  } finally {
    await cleanupAll();
  }
}
