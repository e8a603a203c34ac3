/**
 * Connection-churn soak (issue 9, MISSION §7 "≤ idle + 16 MiB after connection churn"): N
 * client processes each loop new connection → FetchX509SVID → first message → cancel → close,
 * as a misbehaving or hostile pod would, for D seconds, against a real server and agent
 * started from a checkout. The agent's VmRSS/RssAnon are sampled every second.
 *
 *   node bench/churn-soak.ts [--checkout DIR] [--clients 4] [--seconds 60] [--rest 10] [--idle 5] [--heap-stats]
 *
 * --checkout runs DIR/bin/spiffe-{server,agent}.js with DIR/node_modules/.bin/node (default:
 * this repo), so an older commit's worktree is measured the same way. The clients are this
 * repo's grpc-js (a generic client, see support/fetch-client.ts) in child processes.
 * Baselines from the same run: a bare Node process from the checkout, and the agent's own
 * idle figures before the churn (ratios are against those).
 *
 * --heap-stats turns on the agent's Prometheus telemetry and adds its V8 heap and external
 * memory (prom-client's nodejs_* metrics) to the memory table, to tell heap growth from native
 * memory. It changes the agent's configuration, so compare like with like.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cleanupAll, stopChild, trackChild } from './support/cleanup.ts';
import { freePort, resolveCheckout, scrapeHeap, startCluster, type HeapStats } from './support/cluster.ts';
import { errorKind, fetchFirst, newClient } from './support/fetch-client.ts';
import { MemorySampler, readCpuMs, type Memory } from './support/proc-stats.ts';
import { bareNodeMemory, logSummary, mib, ms, quantile, ratio, runHeader, table } from './support/report.ts';

const { values: args } = parseArgs({
  options: {
    checkout: { type: 'string' },
    clients: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '60' },
    rest: { type: 'string', default: '10' },
    idle: { type: 'string', default: '5' },
    'heap-stats': { type: 'boolean', default: false },
    role: { type: 'string' },
    socket: { type: 'string' },
  },
  strict: true,
});

/** What a client process reports every second ('tick') and at the end ('done'). */
interface ClientReport {
  readonly type: 'tick' | 'done';
  readonly cycles: number;
  readonly failures: Record<string, number>;
  /** How long the loop ran (ms), in 'done'. */
  readonly elapsedMs?: number;
  readonly p50?: number;
  readonly p99?: number;
  readonly max?: number;
}

/** A client process: churns until the deadline, reporting to the parent over IPC. */
async function runClient(socketPath: string, seconds: number): Promise<void> {
  // Parent gone (crash, kill -9): stop too.
  process.on('disconnect', () => process.exit(0));
  let cycles = 0;
  const failures: Record<string, number> = {};
  const latencies: number[] = [];
  const send = (r: ClientReport): void => void process.send?.(r);
  const tick = setInterval(() => send({ type: 'tick', cycles, failures }), 1_000);
  const loopStart = performance.now();
  const deadline = loopStart + seconds * 1_000;
  while (performance.now() < deadline) {
    const t0 = performance.now();
    const client = newClient(socketPath);
    try {
      await fetchFirst(client, 10_000);
      cycles += 1;
      latencies.push(performance.now() - t0);
    } catch (err) {
      const kind = errorKind(err);
      failures[kind] = (failures[kind] ?? 0) + 1;
    } finally {
      client.close();
    }
  }
  clearInterval(tick);
  latencies.sort((a, b) => a - b);
  const done: ClientReport = { type: 'done', cycles, failures, elapsedMs: performance.now() - loopStart, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: latencies.at(-1) ?? NaN };
  process.send?.(done, () => process.disconnect());
}

function startClient(socketPath: string, seconds: number, onReport: (r: ClientReport) => void): { child: ChildProcess; done: Promise<ClientReport> } {
  const child = trackChild(fork(import.meta.filename, ['--role', 'client', '--socket', socketPath, '--seconds', String(seconds)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const done = new Promise<ClientReport>((resolve, reject) => {
    child.on('message', (m: ClientReport) => {
      onReport(m);
      if (m.type === 'done') resolve(m);
    });
    // 'close' comes after the IPC channel has delivered everything.
    child.once('close', (code) => reject(new Error(`bench: churn client exited with ${code} before reporting`)));
  });
  return { child, done };
}

function median(xs: readonly Memory[]): Memory {
  return { rssKiB: quantile(xs.map((m) => m.rssKiB), 0.5), anonKiB: quantile(xs.map((m) => m.anonKiB), 0.5) };
}

async function main(): Promise<void> {
  const clients = Number(args.clients);
  const seconds = Number(args.seconds);
  const restSeconds = Number(args.rest);
  const idleSeconds = Number(args.idle);
  const checkout = await resolveCheckout(args.checkout);
  process.stderr.write(`churn-soak: ${checkout.dir} @ ${checkout.label}; ${clients} clients × ${seconds} s\n`);
  const baseline = await bareNodeMemory(checkout);
  const metricsPort = args['heap-stats'] ? await freePort() : undefined;
  const cluster = await startCluster(checkout, metricsPort === undefined ? {} : { prometheusPort: metricsPort });
  const heap = async (): Promise<HeapStats | undefined> => (metricsPort === undefined ? undefined : scrapeHeap(metricsPort));
  const pid = cluster.agentPid;
  const sampler = new MemorySampler(pid, 1_000);
  await new Promise((r) => setTimeout(r, idleSeconds * 1_000));
  const idleSamples = sampler.samples.filter((s) => s.atMs >= 1_000);
  const idle = median(idleSamples.length > 0 ? idleSamples : sampler.samples);
  const idleFds = quantile(sampler.samples.map((s) => s.fds), 0.5);
  const idleHeap = await heap();
  const logStart = readFileSync(cluster.agentLog, 'utf8').length;

  process.stderr.write('churn-soak: churning\n');
  const perSecond: number[] = [];
  const latest = new Map<ChildProcess, number>();
  const churnStart = sampler.now();
  const cpuStart = readCpuMs(pid) ?? NaN;
  const started = Array.from({ length: clients }, () => {
    const c = startClient(cluster.socketPath, seconds, (r) => latest.set(c.child, r.cycles));
    return c;
  });
  let last = 0;
  const rateTimer = setInterval(() => {
    const total = [...latest.values()].reduce((a, b) => a + b, 0);
    perSecond.push(total - last);
    last = total;
  }, 1_000);
  const reports = await Promise.all(started.map((c) => c.done));
  clearInterval(rateTimer);
  const cpuEnd = readCpuMs(pid) ?? NaN;
  const churnEnd = sampler.now();
  await Promise.all(started.map((c) => stopChild(c.child)));
  const afterChurn = sampler.sample() ?? { rssKiB: NaN, anonKiB: NaN, fds: NaN, atMs: NaN };
  const afterChurnHeap = await heap();
  const peak = sampler.peak(churnStart, churnEnd + 1_000);
  const peakFds = Math.max(...sampler.samples.filter((s) => s.atMs >= churnStart && s.atMs <= churnEnd + 1_000).map((s) => s.fds));

  process.stderr.write(`churn-soak: resting ${restSeconds} s\n`);
  const cpuRestStart = readCpuMs(pid) ?? NaN;
  await new Promise((r) => setTimeout(r, restSeconds * 1_000));
  const afterRest = sampler.sample() ?? { rssKiB: NaN, anonKiB: NaN, fds: NaN, atMs: NaN };
  const afterRestHeap = await heap();
  const cpuRestEnd = readCpuMs(pid) ?? NaN;
  sampler.stop();
  const agentAlive = cluster.agent.exitCode === null && cluster.agent.signalCode === null;
  const warnings = logSummary(readFileSync(cluster.agentLog, 'utf8').slice(logStart));
  await cluster.stop();

  const cycles = reports.reduce((a, r) => a + r.cycles, 0);
  const failures: Record<string, number> = {};
  for (const r of reports) for (const [k, n] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + n;
  const churnSeconds = (churnEnd - churnStart) / 1_000;
  // Each client's own loop time: process start-up is not churn.
  const cyclesPerSecond = reports.reduce((a, r) => a + (r.cycles * 1_000) / (r.elapsedMs ?? NaN), 0);
  const cpuPer1000 = ((cpuEnd - cpuStart) / cycles) * 1_000;

  const withHeap = metricsPort !== undefined;
  const memRow = (label: string, m: Memory, fds: number, h?: HeapStats): string[] => [
    label,
    mib(m.rssKiB),
    mib(m.anonKiB),
    ratio(m.anonKiB, idle.anonKiB),
    `${m.anonKiB - idle.anonKiB >= 0 ? '+' : ''}${mib(m.anonKiB - idle.anonKiB)}`,
    Number.isFinite(fds) ? String(fds) : 'n/a',
    ...(withHeap ? [h === undefined ? '' : `${mib(h.heapTotalKiB)} / ${mib(h.heapUsedKiB)} / ${mib(h.externalKiB)}`] : []),
  ];
  const baseRow = (label: string, m: Memory | undefined): string[] => [label, mib(m?.rssKiB ?? NaN), mib(m?.anonKiB ?? NaN), ratio(m?.anonKiB ?? NaN, idle.anonKiB), '', '', ...(withHeap ? [''] : [])];
  const out = [
    `### Connection churn soak (\`bench/churn-soak.ts\`): ${clients} clients × ${seconds} s${withHeap ? ', with Prometheus telemetry (--heap-stats)' : ''}`,
    '',
    runHeader(checkout, `each cycle: new connection → FetchX509SVID → first message → cancel → close; agent sampled every 1 s; rest ${restSeconds} s`),
    '',
    table(
      ['agent', 'VmRSS', 'RssAnon', 'RssAnon vs idle', 'RssAnon − idle', 'open fds', ...(withHeap ? ['V8 heap total / used / external'] : [])],
      [
        baseRow('baseline: bare Node (checkout node, idle timer)', baseline.bare),
        baseRow('baseline: Node + @grpc/grpc-js loaded', baseline.grpc),
        memRow('agent idle before churn (median)', idle, idleFds, idleHeap),
        memRow('agent peak during churn', peak, peakFds),
        memRow('agent right after churn', afterChurn, afterChurn.fds, afterChurnHeap),
        memRow(`agent after ${restSeconds} s rest`, afterRest, afterRest.fds, afterRestHeap),
      ],
    ),
    '',
    table(
      ['churn', 'value'],
      [
        ['cycles completed', `${cycles} (clients' loops ${seconds} s each; churn window incl. client start-up ${churnSeconds.toFixed(1)} s)`],
        ['cycles per second (all clients)', cyclesPerSecond.toFixed(0)],
        ['cycle latency p50 / p99 / max (per client, worst)', `${ms(Math.max(...reports.map((r) => r.p50 ?? NaN)))} / ${ms(Math.max(...reports.map((r) => r.p99 ?? NaN)))} / ${ms(Math.max(...reports.map((r) => r.max ?? NaN)))}`],
        ['failed cycles', Object.keys(failures).length === 0 ? '0' : Object.entries(failures).map(([k, n]) => `${n} × ${k}`).join('; ')],
        ['agent CPU during churn', `${(cpuEnd - cpuStart).toFixed(0)} ms (${((cpuEnd - cpuStart) / (churnSeconds * 10)).toFixed(0)} % of one core)`],
        ['agent CPU per 1,000 cycles', `${cpuPer1000.toFixed(0)} ms`],
        [`agent CPU during the ${restSeconds} s rest`, `${(cpuRestEnd - cpuRestStart).toFixed(0)} ms`],
        ['agent alive at the end', agentAlive ? 'yes' : `NO (exit ${cluster.agent.exitCode ?? cluster.agent.signalCode})`],
        ['agent WARN/ERROR log lines during churn', warnings.length === 0 ? 'none' : warnings.slice(0, 4).join('; ')],
      ],
    ),
    '',
    `RssAnon series (MiB, 1 s apart, churn from t=${(churnStart / 1_000).toFixed(0)} s to t=${(churnEnd / 1_000).toFixed(0)} s):`,
    '`' + sampler.samples.map((s) => (s.anonKiB / 1024).toFixed(0)).join(' ') + '`',
    '',
    'VmRSS series (MiB):',
    '`' + sampler.samples.map((s) => (s.rssKiB / 1024).toFixed(0)).join(' ') + '`',
    '',
    'open fds series:',
    '`' + sampler.samples.map((s) => String(s.fds)).join(' ') + '`',
    '',
    'cycles per second series:',
    '`' + perSecond.join(' ') + '`',
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

if (args.role === 'client') {
  await runClient(args.socket ?? '', Number(args.seconds));
} else {
  try {
    await main();
  } finally {
    await cleanupAll();
  }
}
