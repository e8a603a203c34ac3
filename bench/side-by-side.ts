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
 *                              [--streams 1000] [--entries 1000] [--settle 10] [--idle 5] [--ref COMMIT] [--keep]
 *                              [--churn SECONDS [--churn-clients 4] [--rest 10]]
 *
 * --churn S adds connection churn (off by default): --churn-clients Go clients each loop new
 * connection → FetchX509SVID → first response → close for S seconds against one agent, then the
 * other; RssAnon before, right after and after --rest seconds. --streams 0 / --entries 0 skip
 * those rows. --ref builds our layout from a commit (git archive)
 * instead of the working tree. --keep leaves the temp dir (configs, the agents' and the server's
 * logs) in place and prints its path. SPIRE v1.13.3 is built on first use into
 * $XDG_CACHE_HOME/spiffe-node-agent (see support/spire-build.ts; SPIRE_BIN_DIR=<dir> uses
 * prebuilt binaries). Needs Go ≥ 1.24 on PATH (or GO=…) and npm (for `npm ci --omit=dev`).
 *
 * Our agent runs with
 *   experimental { workload_api_limits { connections_per_process = 1000, connections_per_pod = 1000,
 *                  calls_per_caller = 100000, streams_per_connection = 1000 } }
 * in every row, because the stream row opens many streams from one client process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, symlinkSync, chmodSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll, stopChild, trackChild, trackDir } from './support/cleanup.ts';
import { REPO, freePort } from './support/cluster.ts';
import { readCpuMs, readMemory, type Memory } from './support/proc-stats.ts';
import { mib, ms, quantile, table } from './support/report.ts';
import { ensureSpireBinaries, spireCacheDir, SPIRE_VERSION } from './support/spire-build.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    warm: { type: 'string', default: '2000' },
    newconn: { type: 'string', default: '500' },
    jwt: { type: 'string', default: '2000' },
    streams: { type: 'string', default: '1000' },
    entries: { type: 'string', default: '1000' },
    idle: { type: 'string', default: '5' },
    settle: { type: 'string', default: '10' },
    ref: { type: 'string' },
    keep: { type: 'boolean', default: false },
    churn: { type: 'string', default: '0' },
    'churn-clients': { type: 'string', default: '4' },
    rest: { type: 'string', default: '10' },
  },
  strict: true,
});

const TD = 'example.org';
const NODE = join(REPO, 'node_modules/.bin/node');
const UID = process.getuid?.() ?? 0;
const log = (line: string): void => void process.stderr.write(`side-by-side: ${line}\n`);

/** Runs a command to completion (tracked, so Ctrl-C ends it too); resolves with its stdout. */
function run(cmd: string, argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, argv, { cwd: opts.cwd, env: opts.env, timeout: opts.timeout ?? 300_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout);
      else reject(new Error(`${cmd} ${argv.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
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

/** Runs the Go client once; returns its JSON and the agent's CPU time spent meanwhile. */
async function drive(client: string, agent: Agent, mode: string, n: number): Promise<ClientResult & { cpuMs: number }> {
  const cpu0 = readCpuMs(agent.pid) ?? NaN;
  const out = await run(client, ['-socket', agent.socket, '-mode', mode, '-n', String(n)]);
  const cpu1 = readCpuMs(agent.pid) ?? NaN;
  const res = JSON.parse(out.trim().split('\n').at(-1) as string) as ClientResult;
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
    await new Promise((r) => setTimeout(r, 250));
  }
  return { rssKiB: quantile(xs.map((m) => m.rssKiB), 0.5), anonKiB: quantile(xs.map((m) => m.anonKiB), 0.5) };
}

/** Opens `k` streams (over k/100 connections), reads RssAnon once they are all open, closes them. */
async function streamMemory(client: string, agent: Agent, k: number): Promise<{ before: Memory; held: Memory; open: number; failed: number; openMs: number; firstError: string }> {
  const before = await memoryOver(agent.pid, 2);
  const conns = Math.max(1, Math.ceil(k / 100));
  const child = trackChild(spawn(client, ['-socket', agent.socket, '-mode', 'streams', '-k', String(k), '-conns', String(conns), '-timeout', '600s'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const ready = await new Promise<{ open: number; failed: number; open_ms: number; first_error: string }>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.includes('"ready"'));
      if (line !== undefined) resolve(JSON.parse(line) as { open: number; failed: number; open_ms: number; first_error: string });
    });
    child.once('exit', (code) => reject(new Error(`streams client exited with ${code}`)));
  });
  await new Promise((r) => setTimeout(r, 1_000));
  const held = await memoryOver(agent.pid, 2);
  child.stdin?.end();
  await stopChild(child, 10_000);
  return { before, held, open: ready.open, failed: ready.failed, openMs: ready.open_ms, firstError: ready.first_error };
}

async function main(): Promise<void> {
  const rounds = Number(args.rounds);
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
  const serverCli = (...argv: string[]): Promise<string> => run(spire.server, [...argv, '-socketPath', adminSocket], { timeout: 60_000 });
  await waitUntil('spire-server did not become healthy', 60_000, async () => {
    if (server.exitCode !== null) throw new Error(`spire-server exited with ${server.exitCode}\n${readFileSync(serverLog, 'utf8').slice(-3000)}`);
    return serverCli('healthcheck').then(() => true, () => false);
  }, serverLog);
  const bundlePath = join(dir, 'bundle.pem');
  writeFileSync(bundlePath, await serverCli('bundle', 'show'));
  const token = async (): Promise<string> => {
    const t = /Token: (\S+)/.exec(await serverCli('token', 'generate', '-ttl', '600'))?.[1];
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
  log_level = "INFO"
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
  const startAgent = async (name: Agent['name']): Promise<Agent> => {
    const joinToken = await token();
    const { conf, socket } = agentConf(name, joinToken, name === 'ours' ? ourLimits : '');
    const logFile = join(dir, name, 'agent.log');
    const proc =
      name === 'ours'
        ? spawnLogged(NODE, [join(app, 'bin/spiffe-agent.js'), 'run', '-config', conf], logFile, { cwd: app, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', NODE_ENV: 'production' } })
        : spawnLogged(spire.agent, ['run', '-config', conf], logFile, { cwd: join(dir, name) });
    if (proc.pid === undefined) throw new Error(`${name} did not spawn`);
    await waitUntil(`${name} socket did not appear`, 60_000, () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      return existsSync(socket);
    }, logFile);
    return { name, proc, pid: proc.pid, socket, logFile, id: `spiffe://${TD}/spire/agent/join_token/${joinToken}` };
  };
  log('starting spire-server, spire-agent and our agent');
  const theirs = await startAgent('spire-agent');
  const ours = await startAgent('ours');
  const agents = [ours, theirs] as const;
  for (const a of agents) {
    await serverCli('entry', 'create', '-parentID', a.id, '-spiffeID', `spiffe://${TD}/bench/${a.name}`, '-selector', `unix:uid:${UID}`);
  }
  // Both serve the entry: the first fetch after the entry sync.
  await Promise.all(agents.map((a) => run(client, ['-socket', a.socket, '-mode', 'wait', '-count', '1', '-timeout', '60s'])));
  // Settle first: right after start-up Node's heap still holds start-up garbage that V8's
  // memory reducer collects after a few idle seconds.
  log(`both agents serve their entry; settling ${args.settle} s, then idle memory over ${args.idle} s`);
  await new Promise((r) => setTimeout(r, Number(args.settle) * 1_000));

  // --- idle memory: both at the same time
  const idleMem = await Promise.all(agents.map((a) => memoryOver(a.pid, Number(args.idle))));

  // --- streams, right after idle (ours, spire, ours, spire): the first pass starts from each
  // agent's idle state; the second shows what a process that has held streams before pays
  const k = Number(args.streams);
  const streamRuns: Record<Agent['name'], Awaited<ReturnType<typeof streamMemory>>[]> = { ours: [], 'spire-agent': [] };
  if (k > 0) {
    for (let r = 0; r < 2; r++) {
      for (const a of agents) {
        log(`${k} streams: ${a.name} (${r + 1}/2)`);
        streamRuns[a.name].push(await streamMemory(client, a, k));
      }
    }
  }

  // --- interleaved rounds
  type Row = { warm: ClientResult & { cpuMs: number }; newconn: ClientResult & { cpuMs: number }; jwt: ClientResult & { cpuMs: number } };
  const results: Record<Agent['name'], Row[]> = { ours: [], 'spire-agent': [] };
  for (let r = 0; r < rounds; r++) {
    for (const a of agents) {
      log(`round ${r + 1}/${rounds}: ${a.name}`);
      const warm = await drive(client, a, 'warm', Number(args.warm));
      const newconn = await drive(client, a, 'newconn', Number(args.newconn));
      const jwt = await drive(client, a, 'jwt', Number(args.jwt));
      results[a.name].push({ warm, newconn, jwt });
    }
  }

  // --- connection churn (optional): ours, then spire-agent
  const churnSeconds = Number(args.churn);
  const churnClients = Number(args['churn-clients']);
  const restSeconds = Number(args.rest);
  const churnRuns: Partial<Record<Agent['name'], { before: Memory; after: Memory; rested: Memory; cycles: number; perSecond: number; cpuMs: number; errors: number }>> = {};
  if (churnSeconds > 0) {
    for (const a of agents) {
      log(`churn: ${a.name}, ${churnClients} clients × ${churnSeconds} s, then ${restSeconds} s rest`);
      const before = await memoryOver(a.pid, 2);
      const cpu0 = readCpuMs(a.pid) ?? NaN;
      const outs = await Promise.all(
        Array.from({ length: churnClients }, () => run(client, ['-socket', a.socket, '-mode', 'newconn', '-warmup', '0', '-duration', `${churnSeconds}s`, '-timeout', `${churnSeconds + 60}s`], { timeout: (churnSeconds + 90) * 1_000 })),
      );
      const cpu1 = readCpuMs(a.pid) ?? NaN;
      const after = await memoryOver(a.pid, 2);
      await new Promise((r) => setTimeout(r, Math.max(0, restSeconds - 2) * 1_000));
      const rested = await memoryOver(a.pid, 2);
      const res = outs.map((o) => JSON.parse(o.trim().split('\n').at(-1) as string) as ClientResult);
      const cycles = res.reduce((x, r) => x + r.n, 0);
      churnRuns[a.name] = { before, after, rested, cycles, perSecond: res.reduce((x, r) => x + r.rate_per_s, 0), cpuMs: cpu1 - cpu0, errors: res.reduce((x, r) => x + r.errors, 0) };
    }
  }

  // --- 1,000 entries: time from `entry create` to a response carrying all SVIDs, then memory
  const nEntries = Number(args.entries);
  const entryRuns: Partial<Record<Agent['name'], { ms: number; before: Memory; after: Memory; svids: number }>> = {};
  if (nEntries > 0) {
    for (const a of agents) {
      log(`${nEntries} entries: ${a.name}`);
      const before = await memoryOver(a.pid, 2);
      const file = join(dir, `entries-${a.name}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          entries: Array.from({ length: nEntries }, (_, i) => ({ parent_id: a.id, spiffe_id: `spiffe://${TD}/bench/${a.name}/many/${i}`, selectors: [{ type: 'unix', value: `uid:${UID}` }] })),
        }),
      );
      const waiter = run(client, ['-socket', a.socket, '-mode', 'wait', '-count', String(nEntries + 1), '-timeout', '300s'], { timeout: 330_000 });
      const t0 = Date.now();
      await serverCli('entry', 'create', '-data', file);
      const done = JSON.parse((await waiter).trim().split('\n').at(-1) as string) as { done_unix_ms: number; svids: number };
      await new Promise((r) => setTimeout(r, 1_000));
      const after = await memoryOver(a.pid, 3);
      entryRuns[a.name] = { ms: done.done_unix_ms - t0, before, after, svids: done.svids };
    }
  }

  // Alive at the end?
  const alive = agents.map((a) => a.proc.exitCode === null && a.proc.signalCode === null);
  await Promise.all(agents.map((a) => stopChild(a.proc)));
  await stopChild(server);

  // --- report
  const med = (name: Agent['name'], f: (r: Row) => number): number => quantile(results[name].map(f), 0.5);
  // A ratio only means something between two positive figures (memory deltas can be negative).
  const rat = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && a >= 0 && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
  const rows: string[][] = [];
  const add = (label: string, o: number, s: number, fmt: (v: number) => string): void => void rows.push([label, fmt(o), fmt(s), rat(o, s)]);
  const per = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)}/s` : 'n/a');
  const cpu = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} ms` : 'n/a');
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
  if (k > 0) {
    // From the first pass: each agent's idle state to K streams held.
    const perStream = (name: Agent['name']): number => {
      const s = streamRuns[name][0];
      return s === undefined ? NaN : ((s.held.anonKiB - s.before.anonKiB) * 1024) / Math.max(1, s.open);
    };
    const kib = (v: number): string => (Number.isFinite(v) ? `${(v / 1024).toFixed(1)} KiB` : 'n/a');
    add(`RssAnon per open stream (${k} streams, ${Math.ceil(k / 100)} connections; first pass, from idle)`, perStream('ours'), perStream('spire-agent'), kib);
    add(`RssAnon with ${k} streams open (first pass)`, streamRuns.ours[0]?.held.anonKiB ?? NaN, streamRuns['spire-agent'][0]?.held.anonKiB ?? NaN, mib);
    add(`time to open ${k} streams (first response on each)`, quantile(streamRuns.ours.map((s) => s.openMs), 0.5), quantile(streamRuns['spire-agent'].map((s) => s.openMs), 0.5), ms);
  }
  const co = churnRuns.ours;
  const cs = churnRuns['spire-agent'];
  if (co !== undefined && cs !== undefined) {
    const lbl = `${churnClients} clients × ${churnSeconds} s of connection churn`;
    add(`${lbl}: cycles/s`, co.perSecond, cs.perSecond, per);
    add(`${lbl}: agent CPU per 1,000 cycles`, (co.cpuMs / co.cycles) * 1_000, (cs.cpuMs / cs.cycles) * 1_000, cpu);
    add(`${lbl}: RssAnon right after − before`, co.after.anonKiB - co.before.anonKiB, cs.after.anonKiB - cs.before.anonKiB, mib);
    add(`${lbl}: RssAnon after ${restSeconds} s rest − before`, co.rested.anonKiB - co.before.anonKiB, cs.rested.anonKiB - cs.before.anonKiB, mib);
    add(`${lbl}: RssAnon after ${restSeconds} s rest − idle`, co.rested.anonKiB - oIdle.anonKiB, cs.rested.anonKiB - sIdle.anonKiB, mib);
  }
  const eo = entryRuns.ours;
  const es = entryRuns['spire-agent'];
  if (eo !== undefined && es !== undefined) {
    add(`time from creating ${nEntries} entries to a response with all ${nEntries + 1} SVIDs`, eo.ms, es.ms, ms);
    add(`RssAnon with ${nEntries + 1} entries and SVIDs`, eo.after.anonKiB, es.after.anonKiB, mib);
    add(`RssAnon growth for ${nEntries} entries`, eo.after.anonKiB - eo.before.anonKiB, es.after.anonKiB - es.before.anonKiB, mib);
  }

  const perRound = (name: Agent['name']): string =>
    results[name].map((r) => `${r.warm.p50_ms.toFixed(3)}/${r.newconn.p50_ms.toFixed(3)}/${r.jwt.p50_ms.toFixed(3)}`).join(', ');
  const streamNotes = (name: Agent['name']): string =>
    streamRuns[name].map((s) => `${s.open} open${s.failed > 0 ? `, ${s.failed} failed (${s.firstError})` : ''}, RssAnon ${mib(s.before.anonKiB)} → ${mib(s.held.anonKiB)}`).join('; ');
  const out = [
    `### Side by side (\`npm run bench:spire\` → \`bench/side-by-side.ts\`)`,
    '',
    `- date: ${new Date().toISOString()}; Node ${process.version}; ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}); shared machine (load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' / ')})`,
    `- spire-server and spire-agent ${spire.version} (${spire.built ? `built in this run, ${((spire.buildMs ?? 0) / 1000).toFixed(0)} s` : `reused from ${spire.dir}`}); one spire-server (sqlite3, join_token, memory key manager) for both agents; both agents: join_token, disk key manager, unix workload attestor, log level INFO, one entry for uid ${UID}`,
    `- ours: ${layoutLabel}, production layout (dist/ + \`npm ci --omit=dev\`, NODE_ENV=production, built in ${(layoutMs / 1000).toFixed(0)} s), with \`experimental { workload_api_limits { connections_per_process = 1000, connections_per_pod = 1000, calls_per_caller = 100000, streams_per_connection = 1000 } }\` ${k > 0 ? ` (the stream row opens ${k} streams from one process)` : ''}`,
    `- client: bench/go (go-spiffe v2.9.0 Workload API stubs, no SVID parsing), one process per measurement; ${rounds} interleaved rounds (ours, spire-agent, …), each: ${args.warm} warm fetches on one connection (after 50 unmeasured), ${args.newconn} fetches on a new connection each, ${args.jwt} cached FetchJWTSVID; medians of the per-round figures; CPU is the agent's utime+stime from /proc during the client run; idle memory is a median over ${args.idle} s (a reading every 250 ms), both agents at once, ${args.settle} s after each has served its first fetch, before any load`,
    '',
    table(['what', 'ours', 'spire-agent', 'ours / spire-agent'], rows),
    '',
    `- per-round p50 warm / new connection / JWT (ms): ours ${perRound('ours')}; spire-agent ${perRound('spire-agent')}`,
    ...(k > 0 ? [`- streams (measured right after idle, before the rounds; passes ours, spire-agent, ours, spire-agent; RssAnon is a 2 s median before opening and after all are open): ours ${streamNotes('ours')}; spire-agent ${streamNotes('spire-agent')}`] : []),
    ...(co !== undefined && cs !== undefined
      ? [`- churn (after the rounds, ours then spire-agent; each cycle: new connection → FetchX509SVID → first response → cancel → close): RssAnon before → right after → after ${restSeconds} s rest: ours ${mib(co.before.anonKiB)} → ${mib(co.after.anonKiB)} → ${mib(co.rested.anonKiB)} (${co.cycles} cycles, ${co.errors} failed); spire-agent ${mib(cs.before.anonKiB)} → ${mib(cs.after.anonKiB)} → ${mib(cs.rested.anonKiB)} (${cs.cycles} cycles, ${cs.errors} failed)`]
      : []),
    ...(eo !== undefined && es !== undefined ? [`- entries: created with one \`spire-server entry create -data\` batch per agent (ours first, then spire-agent); the time runs from just before that command to the client's first response carrying all SVIDs (it reconnects every 20 ms while PermissionDenied). RssAnon before → after: ours ${mib(eo.before.anonKiB)} → ${mib(eo.after.anonKiB)}, spire-agent ${mib(es.before.anonKiB)} → ${mib(es.after.anonKiB)}`] : []),
    `- agents alive at the end: ours ${alive[0] ? 'yes' : 'NO'}, spire-agent ${alive[1] ? 'yes' : 'NO'}; whole run ${((performance.now() - started) / 1000).toFixed(0)} s`,
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

try {
  await main();
} finally {
  await cleanupAll();
}
