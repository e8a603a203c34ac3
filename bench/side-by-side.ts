/**
 * Side by side with spire-agent (issue 10): one real SPIRE `spire-server` (SQLite datastore,
 * join_token node attestor, in a temp dir), two agents attested to it with join tokens —
 * SPIRE's own `spire-agent` (unix workload attestor) and ours in the production layout
 * (compiled JS + production dependencies, replaying the Dockerfile's build and deps stages) —
 * each with one entry for this process's uid, both driven by the same Go client
 * (bench/go, go-spiffe's Workload API stubs). Rounds are interleaved (ours, spire, ours, …),
 * and the table gives medians across rounds and the ratio ours / spire-agent.
 *
 *   node bench/side-by-side.ts [--rounds 5] [--warm 2000] [--newconn 500] [--jwt 2000]
 *                              [--streams 1000,10000] [--bundle-streams 1000] [--entries 1000,5000,20000]
 *                              [--settle 10] [--idle 5] [--entries-settle 20] [--ref COMMIT] [--keep] [--append]
 *                              [--churn SECONDS [--churn-clients 4] [--rest S] [--churn-series 30]]
 *
 * Steps, in this order: idle memory (both at once); streams (for each size in --streams: K
 * FetchX509SVID streams over K/100 connections, passes ours, spire-agent, ours, spire-agent;
 * RssAnon before and with all open, time to open); the interleaved rounds; the bundle push
 * (--bundle-streams K streams open on each agent at once, then `spire-server localauthority
 * x509 prepare` adds an X.509 authority to the bundle; each stream records when the changed
 * bundle reached it); churn (optional, below); entries (last, on a second pair of agents
 * started for it, so both start from idle and no other step carries the entries:
 * cumulative batches up to each size in --entries, each created out of the agents' sight and
 * then handed to the agent at once by one bridge entry (see entrySizes), one subscriber holding
 * a FetchX509SVID stream throughout; time from the bridge's `entry create` to a response
 * carrying all N+1 SVIDs, RssAnon against the same reading before the first batch; ours first,
 * then its entries are deleted, then spire-agent).
 *
 * --churn S adds connection churn (off by default): --churn-clients Go clients each loop new
 * connection → FetchX509SVID → first response → close for S seconds against one agent, then the
 * other; RssAnon before, every --churn-series seconds during, right after and after --rest
 * seconds (default 60 when S ≥ 300, else 10). A list size of 0 (--streams 0, --entries 0,
 * --bundle-streams 0) skips that step. --ref builds our layout from a commit (git archive)
 * instead of the working tree. --keep leaves the temp dir (configs, the agents' and the server's
 * logs) in place and prints its path. --append also appends the printed section to
 * bench/RESULTS.md. SPIRE v1.13.3 is built on first use into
 * $XDG_CACHE_HOME/spiffe-node-agent (see support/spire-build.ts; SPIRE_BIN_DIR=<dir> uses
 * prebuilt binaries). Needs Go ≥ 1.24 on PATH (or GO=…) and npm (for `npm ci --omit=dev`).
 * SBS_LOG_LEVEL=DEBUG sets both agents' log_level (default INFO) for a look at --keep's logs.
 *
 * The defaults with --rounds 1 took 25 minutes here, 14 of them spire-agent's +15,000 entries
 * (it asks the server for at most 500 SVIDs per sync cycle, and its cycles slow down as its
 * cache grows); --churn 600 adds about 23 minutes (two agents × (600 s + 60 s rest)).
 *
 * Our agent runs with
 *   experimental { workload_api_limits { connections_per_process = 1000, connections_per_pod = 1000,
 *                  calls_per_caller = 100000, streams_per_connection = 1000 } }
 * in every row, because the stream rows open many streams from one client process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, symlinkSync, chmodSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll, stopChild, trackChild, trackDir } from './support/cleanup.ts';
import { REPO, freePort } from './support/cluster.ts';
import { JsonLineChild } from './support/json-lines.ts';
import { MemorySampler, readCpuMs, readMemory, type Memory } from './support/proc-stats.ts';
import { mib, ms, quantile, table } from './support/report.ts';
import { ensureSpireBinaries, spireCacheDir, SPIRE_VERSION } from './support/spire-build.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    warm: { type: 'string', default: '2000' },
    newconn: { type: 'string', default: '500' },
    jwt: { type: 'string', default: '2000' },
    streams: { type: 'string', default: '1000,10000' },
    'bundle-streams': { type: 'string', default: '1000' },
    entries: { type: 'string', default: '1000,5000,20000' },
    idle: { type: 'string', default: '5' },
    settle: { type: 'string', default: '10' },
    'entries-settle': { type: 'string', default: '20' },
    ref: { type: 'string' },
    keep: { type: 'boolean', default: false },
    append: { type: 'boolean', default: false },
    churn: { type: 'string', default: '0' },
    'churn-clients': { type: 'string', default: '4' },
    rest: { type: 'string' },
    'churn-series': { type: 'string', default: '30' },
  },
  strict: true,
});

const TD = 'example.org';
const NODE = join(REPO, 'node_modules/.bin/node');
const UID = process.getuid?.() ?? 0;
const log = (line: string): void => void process.stderr.write(`side-by-side: ${line}\n`);
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));
const count = (n: number): string => n.toLocaleString('en-US');
const secs = (v: number): string => (Number.isFinite(v) ? `${(v / 1000).toFixed(v >= 10_000 ? 1 : 2)} s` : 'n/a');

/** A comma list of sizes: ascending, without zeros or repeats ("0" gives none). */
function sizes(option: string): number[] {
  const list = String(args[option as keyof typeof args]);
  const xs = list.split(',').map((x) => Number(x.trim()));
  if (xs.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`--${option} ${list}: want a comma list of non-negative integers`);
  return [...new Set(xs.filter((x) => x > 0))].sort((a, b) => a - b);
}

/** Runs a command to completion (tracked, so Ctrl-C ends it too); resolves with its stdout. */
function run(cmd: string, argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, argv, { cwd: opts.cwd, env: opts.env, timeout: opts.timeout ?? 300_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout);
      else reject(new Error(`${cmd} ${argv.join(' ')} failed (${err.killed ? `killed after ${opts.timeout ?? 300_000} ms, ` : ''}code ${err.code}, signal ${err.signal}): ${err.message}\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`));
    });
    trackChild(child);
  });
}

function spawnLogged(cmd: string, argv: string[], logFile: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return trackChild(spawn(cmd, argv, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] }));
  } finally {
    closeSync(fd);
  }
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = logFile !== undefined && existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
  throw new Error(`side-by-side: ${what} within ${timeoutMs} ms\n${tail}`);
}

/** The Go client, built into the cache (quick once the module cache has go-spiffe). */
async function buildGoClient(): Promise<string> {
  const out = join(spireCacheDir(), 'wlclient');
  await run(process.env['GO'] ?? 'go', ['build', '-o', out, '.'], { cwd: join(REPO, 'bench/go') });
  return out;
}

/**
 * Our production layout, as the Dockerfile builds it: stage "build" (`npm run build` over
 * package.json, lockfile, tsconfigs, proto, scripts, src; the repo's node_modules stand in for
 * its full `npm ci`), stage "deps" (`npm ci --omit=dev --ignore-scripts`), and the final stage's
 * node_modules + dist + proto + bin + package.json. Returns the app directory.
 */
async function buildLayout(root: string, ref: string | undefined): Promise<{ app: string; label: string }> {
  const build = join(root, 'build');
  mkdirSync(build, { recursive: true });
  const paths = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'proto', 'scripts', 'src', 'bin'];
  let label: string;
  if (ref === undefined) {
    for (const p of paths) cpSync(join(REPO, p), join(build, p), { recursive: true });
    const head = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).trim();
    const dirty = (await run('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no', '--', ...paths])).trim();
    label = `working tree at ${head}${dirty === '' ? '' : ' + uncommitted changes'}`;
  } else {
    const archive = join(root, 'src.tar');
    await run('git', ['-C', REPO, 'archive', '-o', archive, ref, ...paths]);
    await run('tar', ['-xf', archive, '-C', build]);
    label = `${ref} (${(await run('git', ['-C', REPO, 'rev-parse', '--short', ref])).trim()})`;
  }
  symlinkSync(join(REPO, 'node_modules'), join(build, 'node_modules'), 'dir');
  await run('npm', ['run', 'build'], { cwd: build });
  const app = join(root, 'app');
  mkdirSync(app, { recursive: true });
  for (const p of ['package.json', 'package-lock.json']) cpSync(join(build, p), join(app, p));
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app });
  for (const p of ['dist', 'proto', 'bin']) cpSync(join(build, p), join(app, p), { recursive: true });
  return { app, label };
}

interface Agent {
  readonly name: 'ours' | 'spire-agent';
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly socket: string;
  readonly logFile: string;
  readonly id: string;
}
type Name = Agent['name'];

/** spire-server's CLI on the bench's admin socket. */
type ServerCli = (argv: readonly string[], timeoutMs?: number) => Promise<string>;

interface ClientResult {
  readonly mode: string;
  readonly n: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  readonly rate_per_s: number;
  readonly svids: number;
  readonly errors: number;
  readonly first_error?: string;
}

/** What the client's streams and bundle modes print once every stream has its first response. */
interface ReadyLine {
  readonly open: number;
  readonly failed: number;
  readonly open_ms: number;
  readonly first_error: string;
}

const lastLine = (out: string): string => out.trim().split('\n').at(-1) as string;

/** Connections a stream step spreads K streams over: 100 streams each. */
const streamConns = (k: number): number => Math.max(1, Math.ceil(k / 100));
const connections = (k: number): string => (streamConns(k) === 1 ? '1 connection' : `${count(streamConns(k))} connections`);

/** Runs the Go client once; returns its JSON and the agent's CPU time spent meanwhile. */
async function drive(client: string, agent: Agent, mode: string, n: number): Promise<ClientResult & { cpuMs: number }> {
  const cpu0 = readCpuMs(agent.pid) ?? NaN;
  const out = await run(client, ['-socket', agent.socket, '-mode', mode, '-n', String(n)]);
  const cpu1 = readCpuMs(agent.pid) ?? NaN;
  const res = JSON.parse(lastLine(out)) as ClientResult;
  if (res.errors > 0) log(`${agent.name} ${mode}: ${res.errors} errors (first: ${res.first_error})`);
  return { ...res, cpuMs: cpu1 - cpu0 };
}

/** Median of memory readings every 250 ms for `seconds`. */
async function memoryOver(pid: number, seconds: number): Promise<Memory> {
  const xs: Memory[] = [];
  const until = Date.now() + seconds * 1_000;
  while (Date.now() < until) {
    const m = readMemory(pid);
    if (m !== undefined) xs.push(m);
    await sleep(250);
  }
  return { rssKiB: quantile(xs.map((m) => m.rssKiB), 0.5), anonKiB: quantile(xs.map((m) => m.anonKiB), 0.5) };
}

interface StreamRun {
  readonly before: Memory;
  readonly held: Memory;
  readonly open: number;
  readonly failed: number;
  readonly openMs: number;
  readonly firstError: string;
}

/** Opens `k` streams (over k/100 connections), reads RssAnon once they are all open, closes them. */
async function streamMemory(client: string, agent: Agent, k: number): Promise<StreamRun> {
  const before = await memoryOver(agent.pid, 2);
  const holder = new JsonLineChild(client, ['-socket', agent.socket, '-mode', 'streams', '-k', String(k), '-conns', String(streamConns(k)), '-timeout', '900s']);
  try {
    const ready = await holder.next<ReadyLine>(`${agent.name}: ${k} streams`, 900_000);
    if (ready.failed > 0) log(`${agent.name}: ${ready.failed} of ${k} streams failed (first: ${ready.first_error})`);
    await sleep(1_000);
    const held = await memoryOver(agent.pid, 2);
    return { before, held, open: ready.open, failed: ready.failed, openMs: ready.open_ms, firstError: ready.first_error };
  } finally {
    await holder.close();
  }
}

interface BundleRun {
  readonly open: number;
  /** Streams that did not open, and the first error. */
  readonly failed: number;
  readonly firstError: string;
  readonly changed: number;
  /** Arrival of the changed bundle, ms after the prepare command started: first, median, 99th percentile, last stream. */
  readonly firstMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly lastMs: number;
}

/**
 * Opens `k` FetchX509SVID streams on every agent at once, then runs `prepare` (a real bundle
 * change at the server) and reports, per agent, when the new bundle reached its streams.
 */
async function bundlePush(client: string, agents: readonly Agent[], k: number, prepare: () => Promise<unknown>): Promise<{ runs: BundleRun[]; prepareMs: number }> {
  const watchers = agents.map((a) => new JsonLineChild(client, ['-socket', a.socket, '-mode', 'bundle', '-k', String(k), '-conns', String(streamConns(k)), '-timeout', '600s', '-change-timeout', '90s']));
  try {
    const ready = await Promise.all(watchers.map((w, i) => w.next<ReadyLine>(`${agents[i]?.name}: ${k} streams for the bundle change`, 300_000)));
    ready.forEach((r, i) => log(`bundle push: ${agents[i]?.name} has ${r.open} streams open (${r.open_ms.toFixed(0)} ms)${r.failed > 0 ? `, ${r.failed} FAILED (first: ${r.first_error})` : ''}`));
    await sleep(2_000);
    const t0 = Date.now();
    await prepare();
    const prepareMs = Date.now() - t0;
    type Summary = { open: number; changed: number; first_unix_ms: number; p50_unix_ms: number; p99_unix_ms: number; max_unix_ms: number };
    const done = await Promise.all(watchers.map((w, i) => w.next<Summary>(`${agents[i]?.name}: bundle change on ${k} streams`, 150_000)));
    const since = (t: number): number => (t > 0 ? t - t0 : NaN);
    return {
      prepareMs,
      runs: done.map((d, i) => ({ open: d.open, failed: ready[i]?.failed ?? NaN, firstError: ready[i]?.first_error ?? '', changed: d.changed, firstMs: since(d.first_unix_ms), p50Ms: since(d.p50_unix_ms), p99Ms: since(d.p99_unix_ms), lastMs: since(d.max_unix_ms) })),
    };
  } finally {
    await Promise.all(watchers.map((w) => w.close()));
  }
}

interface ChurnRun {
  readonly before: Memory;
  /** RssAnon (KiB) every `seriesSeconds` from the start of the churn, and once at its end. */
  readonly series: number[];
  readonly after: Memory;
  readonly rested: Memory;
  readonly cycles: number;
  readonly perSecond: number;
  readonly cpuMs: number;
  readonly errors: number;
}

/** `clients` Go clients loop new connection → FetchX509SVID → first response → close for `seconds`, then rest. */
async function churn(client: string, agent: Agent, seconds: number, clients: number, restSeconds: number, seriesSeconds: number): Promise<ChurnRun> {
  const before = await memoryOver(agent.pid, 2);
  const cpu0 = readCpuMs(agent.pid) ?? NaN;
  const sampler = new MemorySampler(agent.pid, seriesSeconds * 1_000);
  let outs: string[];
  try {
    outs = await Promise.all(
      Array.from({ length: clients }, () => run(client, ['-socket', agent.socket, '-mode', 'newconn', '-warmup', '0', '-duration', `${seconds}s`, '-timeout', `${seconds + 60}s`], { timeout: (seconds + 90) * 1_000 })),
    );
  } finally {
    sampler.sample();
    sampler.stop();
  }
  const cpu1 = readCpuMs(agent.pid) ?? NaN;
  const after = await memoryOver(agent.pid, 2);
  await sleep(Math.max(0, restSeconds - 2) * 1_000);
  const rested = await memoryOver(agent.pid, 2);
  const res = outs.map((o) => JSON.parse(lastLine(o)) as ClientResult);
  const cycles = res.reduce((x, r) => x + r.n, 0);
  return {
    before,
    series: sampler.samples.map((s) => s.anonKiB),
    after,
    rested,
    cycles,
    perSecond: res.reduce((x, r) => x + r.rate_per_s, 0),
    cpuMs: cpu1 - cpu0,
    errors: res.reduce((x, r) => x + r.errors, 0),
  };
}

interface EntryStep {
  readonly size: number;
  /** Entries this step added (the batch on top of the previous size). */
  readonly added: number;
  /** From just before the bridge entry's `entry create` to the first response carrying all size + 1 SVIDs. */
  readonly ms: number;
  /** How long creating the batch took (before the bridge: not part of `ms`). */
  readonly createMs: number;
  readonly svids: number;
  /** Size of that response (protobuf bytes). */
  readonly bytes: number;
  readonly after: Memory;
  /** RssAnon `--entries-settle` seconds after `after`, all still held: the cached state without the minting's garbage. */
  readonly settled?: Memory;
  /** Set when the agent did not serve them all in time (then the larger sizes are not run). */
  readonly failed?: string;
}

/**
 * How long a step of `added` entries may take: SPIRE's agent requests at most 500 SVIDs per
 * sync cycle (and spire-server signs at most 500/s per IP), and a cycle over 20,000 entries
 * took 25 s on this machine under load: 2 minutes + 80 ms per entry (+15,000: 22 minutes).
 */
const entryTimeoutMs = (added: number): number => 120_000 + added * 80;

interface EntryRun {
  /** RssAnon with the one bench entry, the subscriber already holding its stream. */
  readonly before: Memory;
  readonly steps: EntryStep[];
  /** Entries created (batches and bridges). */
  readonly created: number;
  /** When asked to delete them afterwards: from the start of `entry delete` to the subscriber's response with 1 SVID. */
  readonly deleteMs?: number;
}

/** How many SVIDs one FetchX509SVID response of the agent carries now (a new subscriber). */
async function svidCount(client: string, agent: Agent): Promise<number> {
  const out = await run(client, ['-socket', agent.socket, '-mode', 'warm', '-n', '1', '-warmup', '0', '-timeout', '60s']);
  return (JSON.parse(lastLine(out)) as ClientResult).svids;
}

/** Entry IDs from `entry create -output json`; throws if any failed. */
function createdIds(json: string): string[] {
  const out = JSON.parse(json) as { results?: { status?: { code?: number; message?: string }; entry?: { id?: string } }[] };
  const ids: string[] = [];
  const failed: string[] = [];
  for (const r of out.results ?? []) {
    if ((r.status?.code ?? 0) === 0 && r.entry?.id !== undefined) ids.push(r.entry.id);
    else failed.push(r.status?.message ?? 'no entry in the result');
  }
  if (failed.length > 0) throw new Error(`entry create: ${failed.length} failed (first: ${failed[0]})`);
  return ids;
}

/**
 * The unix selectors both agents' attestors give this process's children (SPIRE's list: uid,
 * user, gid, group, supplementary_gid, supplementary_group; from /proc and /etc like theirs), one
 * per entry in turn.
 * spire-server's similar-entry check on create scans every entry sharing a selector, so a
 * single selector makes creating 20,000 entries quadratic (minutes); six spread it.
 */
function workloadSelectors(): { type: 'unix'; value: string }[] {
  const groups = new Map<number, string>();
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [name, , gid] = line.split(':');
      if (name !== undefined && name !== '' && gid !== undefined && !groups.has(Number(gid))) groups.set(Number(gid), name);
    }
  } catch {
    // no names: the numeric selectors remain
  }
  const gid = process.getgid?.() ?? 0;
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    user = undefined;
  }
  const values = [`uid:${UID}`, ...(user === undefined ? [] : [`user:${user}`]), `gid:${gid}`, ...(groups.has(gid) ? [`group:${groups.get(gid)}`] : [])];
  // Supplementary groups as both attestors read them (process.getgroups() can add the egid).
  const supplementary = (/^Groups:[ \t]*(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '').split(/\s+/).filter((g) => g !== '').map(Number);
  for (const g of supplementary) {
    values.push(`supplementary_gid:${g}`);
    if (groups.has(g)) values.push(`supplementary_group:${groups.get(g)}`);
  }
  return [...new Set(values)].map((value) => ({ type: 'unix', value }));
}

/**
 * Cumulative batches up to each of `sizesUp` entries matching this process's children, with
 * one subscriber (the client's `wait -hold`) holding a FetchX509SVID stream from before the
 * first batch to the end, so neither agent may evict the SVIDs; RssAnon is read after each
 * size with all held. Each batch is created under a parent no agent has
 * (spiffe://…/bench/<agent>/batch-<size>), then one bridge entry (parent: the agent, SPIFFE ID:
 * that parent, a selector no workload has) hands the whole batch to the agent at once — the
 * server returns an agent's entries' descendants too — so the time measured is the agent's
 * (plus the server's entry cache and signing), not spire-server's SQLite inserts. With
 * `deleteAfter`, deletes them all at the end and waits until the subscriber is back at 1 SVID.
 */
async function entrySizes(client: string, agent: Agent, sizesUp: readonly number[], dir: string, serverCli: ServerCli, deleteAfter: boolean): Promise<EntryRun> {
  const counts = [1, ...sizesUp.map((n) => n + 1), ...(deleteAfter ? [1] : [])];
  const holder = new JsonLineChild(client, ['-socket', agent.socket, '-mode', 'wait', '-count', counts.join(','), '-hold', '-timeout', '7200s']);
  type WaitLine = { count: number; svids: number; bytes: number; done_unix_ms: number };
  const selectors = workloadSelectors();
  try {
    await holder.next<WaitLine>(`${agent.name}: subscribe`, 60_000);
    await sleep(1_000);
    const before = await memoryOver(agent.pid, 2);
    const steps: EntryStep[] = [];
    const ids: string[] = [];
    let prev = 0;
    for (const size of sizesUp) {
      const added = size - prev;
      const batchId = `spiffe://${TD}/bench/${agent.name}/batch-${size}`;
      log(`entries: ${agent.name} ${count(size)} (+${count(added)})`);
      const file = join(dir, `entries-${agent.name}-${size}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          entries: Array.from({ length: added }, (_, j) => ({ parent_id: batchId, spiffe_id: `spiffe://${TD}/bench/${agent.name}/many/${prev + j}`, selectors: [selectors[(prev + j) % selectors.length]] })),
        }),
      );
      const c0 = Date.now();
      ids.push(...createdIds(await serverCli(['entry', 'create', '-data', file, '-output', 'json'], 1_800_000)));
      const createMs = Date.now() - c0;
      const t0 = Date.now();
      ids.push(...createdIds(await serverCli(['entry', 'create', '-parentID', agent.id, '-spiffeID', batchId, '-selector', 'unix:user:sna-bench-no-such-user', '-output', 'json'])));
      const limitMs = entryTimeoutMs(added);
      let done: WaitLine;
      try {
        done = await holder.next<WaitLine>(`${agent.name}: a response with ${size + 1} SVIDs`, limitMs);
      } catch (err) {
        // Recorded, not fatal: the rest of the run still reports (this agent's larger sizes are skipped).
        const served = await svidCount(client, agent).catch(() => NaN);
        log(`entries: ${agent.name} FAILED at ${count(size)}: ${(err as Error).message}; a new fetch now carries ${served} SVIDs`);
        steps.push({ size, added, ms: NaN, createMs, svids: served, bytes: NaN, after: await memoryOver(agent.pid, 3), failed: `not within ${secs(limitMs)}: a new fetch then carried ${count(served)} of ${count(size + 1)}` });
        break;
      }
      await sleep(1_000);
      const after = await memoryOver(agent.pid, 3);
      await sleep(Number(args['entries-settle']) * 1_000);
      const settled = await memoryOver(agent.pid, 3);
      steps.push({ size, added, ms: done.done_unix_ms - t0, createMs, svids: done.svids, bytes: done.bytes, after, settled });
      log(`entries: ${agent.name} ${count(size)}: all ${count(done.svids)} SVIDs ${secs(done.done_unix_ms - t0)} after the bridge; RssAnon ${mib(before.anonKiB)} → ${mib(after.anonKiB)}`);
      prev = size;
    }
    if (!deleteAfter) return { before, steps, created: ids.length };
    const incomplete = steps.some((st) => st.failed !== undefined);
    log(`entries: deleting the ${count(ids.length)} of ${agent.name} and waiting until it serves one SVID again`);
    const d0 = Date.now();
    const file = join(dir, `delete-${agent.name}.json`);
    writeFileSync(file, JSON.stringify({ ids }));
    const out = JSON.parse(await serverCli(['entry', 'delete', '-file', file, '-output', 'json'], 1_800_000)) as { results?: { status?: { code?: number } }[] };
    const failed = (out.results ?? []).filter((r) => (r.status?.code ?? 0) !== 0).length;
    if (failed > 0) throw new Error(`entry delete: ${failed} of ${ids.length} failed`);
    if (incomplete) {
      // The subscriber still waits for its missing count: give the agent a few syncs instead.
      await sleep(20_000);
      return { before, steps, created: ids.length };
    }
    const dropped = await holder.next<WaitLine>(`${agent.name}: back to 1 SVID after the delete`, 300_000);
    return { before, steps, created: ids.length, deleteMs: dropped.done_unix_ms - d0 };
  } finally {
    await holder.close();
  }
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
  const streamSizes = sizes('streams');
  const entrySizesUp = sizes('entries');
  const bundleK = Number(args['bundle-streams']);
  const churnSeconds = Number(args.churn);
  const churnClients = Number(args['churn-clients']);
  const restSeconds = args.rest !== undefined ? Number(args.rest) : churnSeconds >= 300 ? 60 : 10;
  const seriesSeconds = Number(args['churn-series']);
  const started = performance.now();

  log(`SPIRE v${SPIRE_VERSION} binaries (${spireCacheDir()})`);
  const spire = await ensureSpireBinaries({ log });
  log(spire.built ? `built SPIRE in ${((spire.buildMs ?? 0) / 1000).toFixed(0)} s` : `reusing ${spire.dir} (spire-agent -version: ${spire.version})`);
  const client = await buildGoClient();

  const dir = mkdtempSync(join(tmpdir(), 'sna-side-by-side-'));
  if (args.keep) log(`keeping ${dir}`);
  else trackDir(dir);
  chmodSync(dir, 0o755);
  log(`building our production layout in ${dir}/layout (npm run build, npm ci --omit=dev)`);
  const layoutStart = performance.now();
  const { app, label: layoutLabel } = await buildLayout(join(dir, 'layout'), args.ref);
  const layoutMs = performance.now() - layoutStart;

  // --- spire-server
  const port = await freePort();
  const adminSocket = join(dir, 'server.sock');
  const serverLog = join(dir, 'spire-server.log');
  writeFileSync(
    join(dir, 'server.conf'),
    `server {
  bind_address = "127.0.0.1"
  bind_port = "${port}"
  socket_path = "${adminSocket}"
  trust_domain = "${TD}"
  data_dir = "${join(dir, 'server-data')}"
  log_level = "WARN"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(dir, 'server-data', 'datastore.sqlite3')}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`,
  );
  mkdirSync(join(dir, 'server-data'));
  const server = spawnLogged(spire.server, ['run', '-config', join(dir, 'server.conf')], serverLog);
  const serverCli: ServerCli = (argv, timeoutMs = 60_000) => run(spire.server, [...argv, '-socketPath', adminSocket], { timeout: timeoutMs });
  await waitUntil('spire-server did not become healthy', 60_000, async () => {
    if (server.exitCode !== null) throw new Error(`spire-server exited with ${server.exitCode}\n${readFileSync(serverLog, 'utf8').slice(-3000)}`);
    return serverCli(['healthcheck']).then(() => true, () => false);
  }, serverLog);
  const bundlePath = join(dir, 'bundle.pem');
  writeFileSync(bundlePath, await serverCli(['bundle', 'show']));
  const token = async (): Promise<string> => {
    const t = /Token: (\S+)/.exec(await serverCli(['token', 'generate', '-ttl', '600']))?.[1];
    if (t === undefined) throw new Error('token generate printed no token');
    return t;
  };

  // --- the agents: same HCL, each with its own socket, data dir and join token
  const agentConf = (name: string, joinToken: string, extra: string): { conf: string; socket: string } => {
    const socket = join(dir, name, 'api.sock');
    mkdirSync(join(dir, name, 'data'), { recursive: true });
    const conf = join(dir, name, 'agent.conf');
    writeFileSync(
      conf,
      `agent {
  trust_domain = "${TD}"
  server_address = "127.0.0.1"
  server_port = "${port}"
  socket_path = "${socket}"
  data_dir = "${join(dir, name, 'data')}"
  log_level = "${process.env['SBS_LOG_LEVEL'] ?? 'INFO'}"
  trust_bundle_path = "${bundlePath}"
  join_token = "${joinToken}"
${extra}}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${join(dir, name, 'data')}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
    );
    return { conf, socket };
  };
  const ourLimits = `  experimental {
    workload_api_limits {
      connections_per_process = 1000
      connections_per_pod = 1000
      calls_per_caller = 100000
      streams_per_connection = 1000
    }
  }
`;
  /** Starts an agent with a new join token, in `<dir>/<name>[-<phase>]`. */
  const startAgent = async (name: Name, phase?: string): Promise<Agent> => {
    const joinToken = await token();
    const home = phase === undefined ? name : `${name}-${phase}`;
    const { conf, socket } = agentConf(home, joinToken, name === 'ours' ? ourLimits : '');
    const logFile = join(dir, home, 'agent.log');
    const proc =
      name === 'ours'
        ? spawnLogged(NODE, [join(app, 'bin/spiffe-agent.js'), 'run', '-config', conf], logFile, { cwd: app, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', NODE_ENV: 'production' } })
        : spawnLogged(spire.agent, ['run', '-config', conf], logFile, { cwd: join(dir, home) });
    if (proc.pid === undefined) throw new Error(`${name} did not spawn`);
    await waitUntil(`${name} socket did not appear`, 60_000, () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      return existsSync(socket);
    }, logFile);
    return { name, proc, pid: proc.pid, socket, logFile, id: `spiffe://${TD}/spire/agent/join_token/${joinToken}` };
  };
  /**
   * spire-agent, then ours, each with one entry for this uid; returns once both serve it and
   * have settled (right after start-up Node's heap still holds start-up garbage that V8's
   * memory reducer collects after a few idle seconds).
   */
  const startPair = async (phase?: string): Promise<readonly [Agent, Agent]> => {
    const theirs = await startAgent('spire-agent', phase);
    const ours = await startAgent('ours', phase);
    const pair = [ours, theirs] as const;
    for (const a of pair) {
      await serverCli(['entry', 'create', '-parentID', a.id, '-spiffeID', `spiffe://${TD}/bench/${a.name}`, '-selector', `unix:uid:${UID}`]);
    }
    // Both serve the entry: the first fetch after the entry sync.
    await Promise.all(pair.map((a) => run(client, ['-socket', a.socket, '-mode', 'wait', '-count', '1', '-timeout', '60s'])));
    log(`both agents serve their entry; settling ${args.settle} s`);
    await sleep(Number(args.settle) * 1_000);
    return pair;
  };
  const isAlive = (a: Agent): boolean => a.proc.exitCode === null && a.proc.signalCode === null;
  log('starting spire-server, spire-agent and our agent');
  const agents = await startPair();
  const [ours] = agents;

  // --- idle memory: both at the same time
  log(`idle memory over ${args.idle} s`);
  const idleMem = await Promise.all(agents.map((a) => memoryOver(a.pid, Number(args.idle))));

  // --- streams, right after idle, per size (ours, spire, ours, spire): the first pass of the
  // first size starts from each agent's idle state; second passes show what a process that
  // has held streams before pays
  const streamRuns = new Map<number, Record<Name, StreamRun[]>>();
  for (const k of streamSizes) {
    const byAgent: Record<Name, StreamRun[]> = { ours: [], 'spire-agent': [] };
    streamRuns.set(k, byAgent);
    for (let r = 0; r < 2; r++) {
      for (const a of agents) {
        log(`${count(k)} streams: ${a.name} (${r + 1}/2)`);
        byAgent[a.name].push(await streamMemory(client, a, k));
      }
    }
  }

  // --- interleaved rounds
  type Row = { warm: ClientResult & { cpuMs: number }; newconn: ClientResult & { cpuMs: number }; jwt: ClientResult & { cpuMs: number } };
  const results: Record<Name, Row[]> = { ours: [], 'spire-agent': [] };
  for (let r = 0; r < rounds; r++) {
    for (const a of agents) {
      log(`round ${r + 1}/${rounds}: ${a.name}`);
      const warm = await drive(client, a, 'warm', Number(args.warm));
      const newconn = await drive(client, a, 'newconn', Number(args.newconn));
      const jwt = await drive(client, a, 'jwt', Number(args.jwt));
      results[a.name].push({ warm, newconn, jwt });
    }
  }

  // --- bundle change pushed to K open streams on both agents at once
  let bundle: Awaited<ReturnType<typeof bundlePush>> | undefined;
  if (bundleK > 0) {
    log(`bundle push: ${count(bundleK)} streams on each agent, then localauthority x509 prepare`);
    bundle = await bundlePush(client, agents, bundleK, () => serverCli(['localauthority', 'x509', 'prepare']));
  }

  // --- connection churn (optional): ours, then spire-agent
  const churnRuns: Partial<Record<Name, ChurnRun>> = {};
  if (churnSeconds > 0) {
    for (const a of agents) {
      log(`churn: ${a.name}, ${churnClients} clients × ${churnSeconds} s, then ${restSeconds} s rest`);
      churnRuns[a.name] = await churn(client, a, churnSeconds, churnClients, restSeconds, seriesSeconds);
    }
  }

  const alive = agents.map(isAlive);
  await Promise.all(agents.map((a) => stopChild(a.proc)));

  // --- entries, on a fresh pair (new join tokens) so both start from their idle state, not
  // from whatever the steps above left in their heaps: ours up to the largest size, its
  // entries deleted, then spire-agent
  const entryRuns: Partial<Record<Name, EntryRun>> = {};
  let entryAlive: boolean[] = [];
  if (entrySizesUp.length > 0) {
    log('entries: starting a fresh spire-agent and our agent');
    const fresh = await startPair('entries');
    for (const a of fresh) {
      entryRuns[a.name] = await entrySizes(client, a, entrySizesUp, dir, serverCli, a.name === 'ours');
      if (a.name === 'ours') await sleep(5_000);
    }
    entryAlive = fresh.map(isAlive);
    await Promise.all(fresh.map((a) => stopChild(a.proc)));
  }
  await stopChild(server);

  // --- report
  const med = (name: Name, f: (r: Row) => number): number => quantile(results[name].map(f), 0.5);
  // A ratio only means something between two positive figures (memory deltas can be negative).
  const rat = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && a >= 0 && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
  const rows: string[][] = [];
  const add = (label: string, o: number, s: number, fmt: (v: number) => string): void => void rows.push([label, fmt(o), fmt(s), rat(o, s)]);
  const per = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)}/s` : 'n/a');
  const cpu = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} ms` : 'n/a');
  const kib = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} KiB` : 'n/a');
  const [oIdle, sIdle] = idleMem as [Memory, Memory];
  add('idle VmRSS', oIdle.rssKiB, sIdle.rssKiB, mib);
  add('idle RssAnon', oIdle.anonKiB, sIdle.anonKiB, mib);
  add('warm FetchX509SVID, one connection: p50', med('ours', (r) => r.warm.p50_ms), med('spire-agent', (r) => r.warm.p50_ms), ms);
  add('warm FetchX509SVID, one connection: p99', med('ours', (r) => r.warm.p99_ms), med('spire-agent', (r) => r.warm.p99_ms), ms);
  add('warm FetchX509SVID, one connection: rate', med('ours', (r) => r.warm.rate_per_s), med('spire-agent', (r) => r.warm.rate_per_s), per);
  add('agent CPU per 1,000 warm fetches', med('ours', (r) => (r.warm.cpuMs / r.warm.n) * 1_000), med('spire-agent', (r) => (r.warm.cpuMs / r.warm.n) * 1_000), cpu);
  add('FetchX509SVID, new connection each: p50', med('ours', (r) => r.newconn.p50_ms), med('spire-agent', (r) => r.newconn.p50_ms), ms);
  add('FetchX509SVID, new connection each: p99', med('ours', (r) => r.newconn.p99_ms), med('spire-agent', (r) => r.newconn.p99_ms), ms);
  add('FetchX509SVID, new connection each: rate', med('ours', (r) => r.newconn.rate_per_s), med('spire-agent', (r) => r.newconn.rate_per_s), per);
  add('agent CPU per 1,000 new-connection fetches', med('ours', (r) => (r.newconn.cpuMs / r.newconn.n) * 1_000), med('spire-agent', (r) => (r.newconn.cpuMs / r.newconn.n) * 1_000), cpu);
  add('FetchJWTSVID (cached), one connection: p50', med('ours', (r) => r.jwt.p50_ms), med('spire-agent', (r) => r.jwt.p50_ms), ms);
  add('FetchJWTSVID (cached), one connection: p99', med('ours', (r) => r.jwt.p99_ms), med('spire-agent', (r) => r.jwt.p99_ms), ms);
  add('agent CPU per 1,000 cached JWT fetches', med('ours', (r) => (r.jwt.cpuMs / r.jwt.n) * 1_000), med('spire-agent', (r) => (r.jwt.cpuMs / r.jwt.n) * 1_000), cpu);
  for (const [k, byAgent] of streamRuns) {
    // From the first pass: the agent's state before opening to K streams held.
    const first = (name: Name): StreamRun | undefined => byAgent[name][0];
    const perStream = (name: Name): number => {
      const s = first(name);
      return s === undefined ? NaN : (s.held.anonKiB - s.before.anonKiB) / Math.max(1, s.open);
    };
    const lbl = `${count(k)} streams (${connections(k)})`;
    add(`${lbl}: RssAnon per open stream (first pass)`, perStream('ours'), perStream('spire-agent'), kib);
    add(`${lbl}: RssAnon with all open (first pass)`, first('ours')?.held.anonKiB ?? NaN, first('spire-agent')?.held.anonKiB ?? NaN, mib);
    add(`${lbl}: time to open (first response on each; median of 2 passes)`, quantile(byAgent.ours.map((s) => s.openMs), 0.5), quantile(byAgent['spire-agent'].map((s) => s.openMs), 0.5), ms);
  }
  const [bo, bs] = bundle?.runs ?? [];
  if (bo !== undefined && bs !== undefined) {
    const lbl = `bundle change → ${count(bundleK)} open streams`;
    add(`${lbl}: first stream updated (from \`localauthority x509 prepare\`; waits for the agent's next sync)`, bo.firstMs, bs.firstMs, ms);
    add(`${lbl}: median stream updated`, bo.p50Ms, bs.p50Ms, ms);
    add(`${lbl}: last stream updated`, bo.lastMs, bs.lastMs, ms);
    add(`${lbl}: spread first → last (fan-out)`, bo.lastMs - bo.firstMs, bs.lastMs - bs.firstMs, ms);
  }
  const co = churnRuns.ours;
  const cs = churnRuns['spire-agent'];
  if (co !== undefined && cs !== undefined) {
    const lbl = `${churnClients} clients × ${churnSeconds} s of connection churn`;
    add(`${lbl}: cycles/s`, co.perSecond, cs.perSecond, per);
    add(`${lbl}: agent CPU per 1,000 cycles`, (co.cpuMs / co.cycles) * 1_000, (cs.cpuMs / cs.cycles) * 1_000, cpu);
    add(`${lbl}: RssAnon peak of the series − before`, Math.max(...co.series) - co.before.anonKiB, Math.max(...cs.series) - cs.before.anonKiB, mib);
    add(`${lbl}: RssAnon right after − before`, co.after.anonKiB - co.before.anonKiB, cs.after.anonKiB - cs.before.anonKiB, mib);
    add(`${lbl}: RssAnon after ${restSeconds} s rest − before`, co.rested.anonKiB - co.before.anonKiB, cs.rested.anonKiB - cs.before.anonKiB, mib);
    add(`${lbl}: RssAnon after ${restSeconds} s rest − idle`, co.rested.anonKiB - oIdle.anonKiB, cs.rested.anonKiB - sIdle.anonKiB, mib);
  }
  const eo = entryRuns.ours;
  const es = entryRuns['spire-agent'];
  if (eo !== undefined && es !== undefined) {
    // A step an agent failed or never ran shows why instead of figures.
    const cell = (step: EntryStep | undefined, f: (st: EntryStep) => number, fmt: (v: number) => string, first: boolean): string =>
      step === undefined ? 'not run' : step.failed !== undefined ? (first ? `FAILED: ${step.failed}` : 'FAILED') : fmt(f(step));
    const value = (step: EntryStep | undefined, f: (st: EntryStep) => number): number => (step === undefined || step.failed !== undefined ? NaN : f(step));
    entrySizesUp.forEach((size, i) => {
      const o = eo.steps[i];
      const s = es.steps[i];
      const added = size - (entrySizesUp[i - 1] ?? 0);
      const lbl = `${count(size)} entries${added === size ? '' : ` (+${count(added)})`}`;
      let first = true;
      const line = (what: string, f: (run: EntryRun, st: EntryStep) => number, fmt: (v: number) => string): void => {
        const fo = (st: EntryStep): number => f(eo, st);
        const fs = (st: EntryStep): number => f(es, st);
        rows.push([`${lbl}: ${what}`, cell(o, fo, fmt, first), cell(s, fs, fmt, first), rat(value(o, fo), value(s, fs))]);
        first = false;
      };
      line(`time from handing them to the agent to a response with all ${count(size + 1)} SVIDs`, (_, st) => st.ms, secs);
      line('RssAnon with all held', (_, st) => st.after.anonKiB, mib);
      line('RssAnon growth since 1 entry', (run, st) => st.after.anonKiB - run.before.anonKiB, mib);
      line('RssAnon growth per 1,000 entries', (run, st) => ((st.after.anonKiB - run.before.anonKiB) * 1_000) / st.size, mib);
      line(`RssAnon growth per 1,000 entries, ${args['entries-settle']} s later (settled)`, (run, st) => (((st.settled?.anonKiB ?? NaN) - run.before.anonKiB) * 1_000) / st.size, mib);
    });
  }

  const perRound = (name: Name): string =>
    results[name].map((r) => `${r.warm.p50_ms.toFixed(3)}/${r.newconn.p50_ms.toFixed(3)}/${r.jwt.p50_ms.toFixed(3)}`).join(', ');
  const streamNotes = (runs: readonly StreamRun[]): string =>
    runs.map((s) => `${s.open} open${s.failed > 0 ? `, ${s.failed} FAILED (${s.firstError})` : ''}, RssAnon ${mib(s.before.anonKiB)} → ${mib(s.held.anonKiB)}`).join('; ');
  const series = (c: ChurnRun): string => `${c.series.map((v) => (v / 1024).toFixed(1)).join(' ')} MiB`;
  const entryNotes = (e: EntryRun): string =>
    `${mib(e.before.anonKiB)} → ${e.steps
      .map((s) => `${mib(s.after.anonKiB)}${s.settled === undefined ? '' : ` (${mib(s.settled.anonKiB)} ${args['entries-settle']} s later)`} (${s.failed !== undefined ? `FAILED, ${s.failed}` : `${count(s.svids)} SVIDs, response ${(s.bytes / 1024 / 1024).toFixed(1)} MiB`}; creating the batch took ${secs(s.createMs)})`)
      .join(' → ')}`;
  const out = [
    `### Side by side (\`npm run bench:spire\` → \`bench/side-by-side.ts\`)`,
    '',
    `- date: ${new Date().toISOString()}; Node ${process.version}; ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}); shared machine (load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' / ')})`,
    `- command: \`node bench/side-by-side.ts ${process.argv.slice(2).join(' ')}\``,
    `- spire-server and spire-agent ${spire.version} (${spire.built ? `built in this run, ${((spire.buildMs ?? 0) / 1000).toFixed(0)} s` : `reused from ${spire.dir}`}); one spire-server (sqlite3, join_token, memory key manager) for both agents; both agents: join_token, disk key manager, unix workload attestor, log level INFO, default sync interval (5 s both: spire-agent's, and ours' \`experimental.sync_interval\` default), default x509_svid_cache_max_size (1,000 both), one entry for uid ${UID}`,
    `- ours: ${layoutLabel}, production layout (dist/ + \`npm ci --omit=dev\`, NODE_ENV=production, built in ${(layoutMs / 1000).toFixed(0)} s), with \`experimental { workload_api_limits { connections_per_process = 1000, connections_per_pod = 1000, calls_per_caller = 100000, streams_per_connection = 1000 } }\` (the stream rows open up to ${count(Math.max(0, ...streamSizes, bundleK))} streams from one process)`,
    `- client: bench/go (go-spiffe v2.9.0 Workload API stubs, no SVID parsing), one process per measurement; ${rounds} interleaved round${rounds === 1 ? '' : 's'} (ours, spire-agent, …), each: ${args.warm} warm fetches on one connection (after 50 unmeasured), ${args.newconn} fetches on a new connection each, ${args.jwt} cached FetchJWTSVID; medians of the per-round figures; CPU is the agent's utime+stime from /proc during the client run; idle memory is a median over ${args.idle} s (a reading every 250 ms), both agents at once, ${args.settle} s after each has served its first fetch, before any load`,
    '',
    table(['what', 'ours', 'spire-agent', 'ours / spire-agent'], rows),
    '',
    `- per-round p50 warm / new connection / JWT (ms): ours ${perRound('ours')}; spire-agent ${perRound('spire-agent')}`,
    ...[...streamRuns].map(
      ([k, byAgent]) =>
        `- ${count(k)} streams over ${connections(k)} (sizes in turn right after idle, before the rounds; passes ours, spire-agent, ours, spire-agent; RssAnon is a 2 s median before opening and 1 s after all are open): ours ${streamNotes(byAgent.ours)}; spire-agent ${streamNotes(byAgent['spire-agent'])}`,
    ),
    ...(bo !== undefined && bs !== undefined && bundle !== undefined
      ? [
          `- bundle push (after the rounds): ${count(bundleK)} FetchX509SVID streams over ${connections(bundleK)} open on each agent at once (one client process each), then \`spire-server localauthority x509 prepare\` (took ${ms(bundle.prepareMs)}) adds a new X.509 authority to the bundle; each stream records the arrival of its first response whose bundle differs from its first response's; times from the start of the prepare command. The first arrival waits for each agent's next sync (every 5 s); the spread first → last is the agent's fan-out. Streams updated: ours ${bo.changed}/${bo.open}${bo.failed > 0 ? ` (${bo.failed} did not open: ${bo.firstError})` : ''}, spire-agent ${bs.changed}/${bs.open}${bs.failed > 0 ? ` (${bs.failed} did not open: ${bs.firstError})` : ''}; p99: ours ${ms(bo.p99Ms)}, spire-agent ${ms(bs.p99Ms)}`,
        ]
      : []),
    ...(co !== undefined && cs !== undefined
      ? [
          `- churn (after the rounds and the bundle push, ours then spire-agent; each cycle: new connection → FetchX509SVID → first response → cancel → close): RssAnon before → right after → after ${restSeconds} s rest: ours ${mib(co.before.anonKiB)} → ${mib(co.after.anonKiB)} → ${mib(co.rested.anonKiB)} (${co.cycles} cycles, ${co.errors} failed); spire-agent ${mib(cs.before.anonKiB)} → ${mib(cs.after.anonKiB)} → ${mib(cs.rested.anonKiB)} (${cs.cycles} cycles, ${cs.errors} failed)`,
          `- churn RssAnon series (a reading at the start, every ${seriesSeconds} s, and at the end): ours ${series(co)}; spire-agent ${series(cs)}`,
        ]
      : []),
    ...(eo !== undefined && es !== undefined
      ? [
          `- entries (last, on a second pair of agents started for it with new join tokens, settled ${args.settle} s, so both start from their idle state; ours, then spire-agent): cumulative batches (${entrySizesUp.map((n, i) => (i === 0 ? count(n) : `+${count(n - (entrySizesUp[i - 1] ?? 0))}`)).join(', ')}) matching the client (its ${workloadSelectors().length} unix selectors, one per entry in turn: spire-server's similar-entry check makes creating many entries with one shared selector quadratic). Each batch is created (one \`entry create -data\`) under a parent no agent has, then one bridge entry (parent: the agent; SPIFFE ID: that parent; a selector no workload has) hands the whole batch to the agent at once; the time runs from just before the bridge's \`entry create\` to the first response carrying all SVIDs, so it includes spire-server's entry cache refresh, the agent's next sync (every 5 s) and the server's CSR rate limit (500 SVIDs/s per IP: ≥ 30 s for +15,000), not the SQLite inserts. One subscriber holds a FetchX509SVID stream from before the first batch to the end (so no SVID is evicted: x509_svid_cache_max_size does not apply to subscribed entries in either agent); growth is against a reading before the first batch (the subscriber holding its 1 SVID), with all SVIDs held. Before → after each size: ours ${entryNotes(eo)}; spire-agent ${entryNotes(es)}. Ours' ${count(eo.created)} entries were deleted (one \`entry delete -file\`) before spire-agent's step; ${eo.deleteMs === undefined ? 'not waited for (a step failed)' : `its subscriber was back at 1 SVID ${secs(eo.deleteMs)} after the delete started`}`,
        ]
      : []),
    `- agents alive at the end: ours ${alive[0] ? 'yes' : 'NO'}, spire-agent ${alive[1] ? 'yes' : 'NO'}${entryAlive.length > 0 ? `; the entries pair: ours ${entryAlive[0] ? 'yes' : 'NO'}, spire-agent ${entryAlive[1] ? 'yes' : 'NO'}` : ''}; whole run ${((performance.now() - started) / 1000).toFixed(0)} s`,
    '',
  ];
  const text = `${out.join('\n')}\n`;
  process.stdout.write(text);
  if (args.append) {
    appendFileSync(join(REPO, 'bench/RESULTS.md'), `\n${text}`);
    log('appended to bench/RESULTS.md');
  }
}

try {
  await main();
} finally {
  await cleanupAll();
}
