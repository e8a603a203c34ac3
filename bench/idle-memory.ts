/**
 * Idle memory of the agent in the production layout (issue 10, MISSION §7: idle ≤ 32 MiB
 * RssAnon), and what each module costs when loaded.
 *
 *   node bench/idle-memory.ts [--checkout DIR] [--layout DIR] [--keep] [--idle 15] [--runs 3] [--skip-modules]
 *
 * The layout is the image's: compiled JavaScript from `npm run build` in dist/, proto/, bin/,
 * package.json and production dependencies only (`npm ci --omit=dev`), built in a temp dir
 * from DIR's sources (default: this repo's working tree) the way
 * test/integration/runtime-layout.test.ts replays the Dockerfile. --layout reuses a layout
 * built before (--keep prints where it is and leaves it).
 *
 * 1. Module costs: one fresh process per step, each step loading one more group of what the
 *    agent loads, RssAnon read after two full GCs (median of --runs processes). The first two
 *    rows are the baselines: bare Node and Node + @grpc/grpc-js. Each process first applies
 *    the agent's heap flags, as `spiffe-agent run` does.
 * 2. The agent: a server and the compiled agent started from the layout with the manifest's
 *    agent.json (join_token and unix attestors instead of the cluster ones, loopback
 *    addresses), one entry, one FetchX509SVID through the layout's CLI, then --idle seconds
 *    of idle. RssAnon/VmRSS are the median of the last 5 one-second samples; heap figures
 *    come from `process.memoryUsage()` inside the agent (a preloaded probe answers SIGUSR2,
 *    read after the RSS samples). Once with the manifest's Prometheus block, once without.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { cleanupAll, stopChild, trackChild, trackDir } from './support/cleanup.ts';
import { HEAP_FLAGS } from '../src/agent/heap-flags.ts';
import { freePort, REPO } from './support/cluster.ts';
import { readMemory } from './support/proc-stats.ts';
import { mib, table } from './support/report.ts';

const execFileAsync = promisify(execFile);
const NODE = process.execPath;

const { values: args } = parseArgs({
  options: {
    checkout: { type: 'string' },
    layout: { type: 'string' },
    keep: { type: 'boolean', default: false },
    idle: { type: 'string', default: '15' },
    runs: { type: 'string', default: '3' },
    'skip-modules': { type: 'boolean', default: false },
  },
  strict: true,
});

async function run(cmd: string, argv: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync(cmd, argv, { cwd, timeout: 300_000, maxBuffer: 32 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`bench: ${cmd} ${argv.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/** Builds the image's layout from `checkout` into a temp dir; returns the app directory. */
async function buildLayout(checkout: string): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'sna-idle-layout-'));
  if (!args.keep) trackDir(root);
  const build = join(root, 'build');
  const deps = join(root, 'deps');
  const app = join(root, 'app');
  for (const d of [build, deps, app]) mkdirSync(d);
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'proto', 'scripts', 'src']) cpSync(join(checkout, f), join(build, f), { recursive: true });
  symlinkSync(join(checkout, 'node_modules'), join(build, 'node_modules'), 'dir');
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(checkout, f), join(deps, f));
  await Promise.all([
    run('npm', ['run', 'build'], build),
    run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], deps),
  ]);
  cpSync(join(deps, 'node_modules'), join(app, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  cpSync(join(build, 'dist'), join(app, 'dist'), { recursive: true });
  for (const f of ['proto', 'bin', 'package.json']) cpSync(join(checkout, f), join(app, f), { recursive: true });
  if (args.keep) console.log(`layout kept in ${app}`);
  return app;
}

/** Cumulative load steps, in the order the agent loads them. */
const MODULE_STEPS: readonly (readonly [name: string, code: string])[] = [
  ['bare node (baseline)', ''],
  ['+ @grpc/grpc-js (baseline)', "await import('@grpc/grpc-js');"],
  ['+ protobufjs', "await import('protobufjs');"],
  ['+ every service definition (dist/common/proto.js)', "await import('./dist/common/proto.js');"],
  ['+ pino and a logger (dist/common/logger.js)', "const { createLogger } = await import('./dist/common/logger.js'); globalThis.logger = createLogger({ name: 'x', level: 'info' });"],
  ['+ koffi and malloc_trim', "const koffi = (await import('koffi')).default; globalThis.trim = koffi.load(null).func('int malloc_trim(size_t)');"],
  ['+ node:http through require (health listener)', "const { createRequire } = await import('node:module'); createRequire(import.meta.url)('node:http');"],
  ['+ the whole agent graph (dist/agent/agent.js)', "await import('./dist/agent/agent.js');"],
  ['+ the CLI commands (dist/agent/cli/*)', "await import('./dist/agent/cli/api-commands.js'); await import('./dist/agent/cli/run-command.js');"],
  ['(not loaded idle) + prom-client (telemetry block)', "await import('prom-client');"],
  ['(not loaded idle) + jose (first JWT validation)', "await import('jose');"],
  ['(in a pod) + the k8s workload attestor (dist/attestors/workload/k8s/k8s.js, kubelet client over node:https)', "await import('./dist/attestors/workload/k8s/k8s.js');"],
  ['(not loaded idle) + @peculiar/x509', "await import('reflect-metadata'); await import('@peculiar/x509');"],
  ['(not loaded idle) + @kubernetes/client-node', "await import('@kubernetes/client-node');"],
];

/** Separate costs, each on top of bare Node, for what the table above does not isolate. */
const ALONE_STEPS: readonly (readonly [name: string, code: string])[] = [
  ["node:http through ESM import (loads Node's bundled undici)", "await import('node:http');"],
  ['node:http through require', "const { createRequire } = await import('node:module'); createRequire(import.meta.url)('node:http');"],
  ['@grpc/proto-loader loadSync of every .proto (before)', "const { createRequire } = await import('node:module'); const require = createRequire(import.meta.url); const files = (await import('node:fs')).readdirSync('proto', { recursive: true, encoding: 'utf8' }).filter((p) => p.endsWith('.proto')); globalThis.def = require('@grpc/proto-loader').loadSync(files, { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true, includeDirs: [process.cwd() + '/proto'] }); require('@grpc/grpc-js').loadPackageDefinition(globalThis.def);"],
  ['dist/common/proto.js', "await import('./dist/common/proto.js');"],
];

interface ProcessMemory {
  readonly anonKiB: number;
  readonly rssKiB: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

/** Every step starts as `spiffe-agent run` does: the agent's heap settings first (heap-flags.ts). */
const HEAP_FLAGS_FIRST = `const v8__ = await import('node:v8'); for (const f of ${JSON.stringify(HEAP_FLAGS)}) v8__.setFlagsFromString(f);\n`;

const READ_MEMORY = `
await new Promise((r) => setTimeout(r, 500)); gc(); gc(); await new Promise((r) => setTimeout(r, 1000));
const status__ = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
const kib__ = (n) => Number(new RegExp('^' + n + ':\\\\s+(\\\\d+)', 'm').exec(status__)[1]);
console.log(JSON.stringify({ anonKiB: kib__('RssAnon'), rssKiB: kib__('VmRSS'), ...process.memoryUsage() }));`;

/** RssAnon and heap of a fresh process (in `app`) after running `code`, median of `runs`. */
async function measureCode(app: string, code: string, runs: number): Promise<ProcessMemory> {
  const results: ProcessMemory[] = [];
  for (let i = 0; i < runs; i++) {
    const child = trackChild(spawn(NODE, ['--expose-gc', '--input-type=module', '-e', HEAP_FLAGS_FIRST + code + READ_MEMORY], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise((r) => child.once('exit', r));
    try {
      results.push(JSON.parse(out) as ProcessMemory);
    } catch {
      throw new Error(`bench: step failed: ${code}\n${err}`);
    }
  }
  results.sort((a, b) => a.anonKiB - b.anonKiB);
  return results[Math.floor(results.length / 2)] as ProcessMemory;
}

const mibB = (bytes: number): string => mib(bytes / 1024);
const delta = (kib: number): string => `${kib >= 0 ? '+' : ''}${(kib / 1024).toFixed(1)} MiB`;

async function moduleCosts(app: string, runs: number): Promise<void> {
  const rows: string[][] = [];
  let code = '';
  let previous: ProcessMemory | undefined;
  let bare: ProcessMemory | undefined;
  for (const [name, step] of MODULE_STEPS) {
    code += step;
    const m = await measureCode(app, code, runs);
    bare ??= m;
    rows.push([name, mib(m.anonKiB), previous === undefined ? '' : delta(m.anonKiB - previous.anonKiB), mib(m.rssKiB), mibB(m.heapUsed), mibB(m.heapTotal), mibB(m.external), mibB(m.arrayBuffers)]);
    previous = m;
  }
  console.log(`\n### Module costs (cumulative, one fresh process per row, after GC, median of ${runs})\n`);
  console.log(table(['step', 'RssAnon', 'Δ RssAnon', 'VmRSS', 'heap used', 'heap total', 'external', 'arrayBuffers'], rows));
  const alone: string[][] = [];
  for (const [name, step] of ALONE_STEPS) {
    const m = await measureCode(app, step, runs);
    alone.push([name, mib(m.anonKiB), delta(m.anonKiB - (bare as ProcessMemory).anonKiB), mibB(m.heapUsed), mibB(m.heapTotal)]);
  }
  console.log(`\n### Single costs (each on bare Node, median of ${runs})\n`);
  console.log(table(['loaded alone', 'RssAnon', 'Δ vs bare node', 'heap used', 'heap total'], alone));
}

/** Answers SIGUSR2 with process.memoryUsage() and V8's heap spaces, written to $IDLE_PROBE_OUT. */
const PROBE = `
import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
process.on('SIGUSR2', () => {
  const spaces = Object.fromEntries(getHeapSpaceStatistics().filter((s) => s.physical_space_size > 0).map((s) => [s.space_name, s.physical_space_size]));
  writeFileSync(process.env.IDLE_PROBE_OUT, JSON.stringify({ ...process.memoryUsage(), spaces }));
});
`;

interface AgentIdle {
  readonly anonKiB: number;
  readonly rssKiB: number;
  readonly series: readonly number[];
  readonly usage: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; spaces: Record<string, number> };
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined | Promise<T | undefined>, log: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`bench: ${what} within ${timeoutMs} ms\n${log().slice(-3000)}`);
}

/** Starts the layout's server and agent, serves one fetch, idles, and reads the agent's memory. */
async function idleAgent(app: string, telemetry: boolean, idleSeconds: number): Promise<AgentIdle> {
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'sna-idle-run-')));
  const adminSocket = join(dir, 'admin.sock');
  const port = await freePort();
  writeFileSync(
    join(dir, 'server.json'),
    JSON.stringify({
      server: { trust_domain: 'example.org', bind_address: '127.0.0.1', bind_port: String(port), socket_path: adminSocket, data_dir: join(dir, 'server-data'), log_level: 'INFO' },
      plugins: { NodeAttestor: { join_token: { plugin_data: {} } } },
    }),
  );
  let serverLog = '';
  const server = trackChild(spawn(NODE, [join(app, 'bin/spiffe-server.js'), 'run', '-config', join(dir, 'server.json')], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] }));
  server.stdout?.on('data', (d: Buffer) => (serverLog += d.toString()));
  server.stderr?.on('data', (d: Buffer) => (serverLog += d.toString()));
  let agent: ChildProcess | undefined;
  try {
    await waitFor('server did not start', 30_000, () => (serverLog.includes('server started') ? true : undefined), () => serverLog);
    const cli = async (...argv: string[]): Promise<string> => (await execFileAsync(NODE, [join(app, 'bin/spiffe-server.js'), ...argv, '-socketPath', adminSocket], { cwd: app })).stdout;
    const token = /Token: (\S+)/.exec(await cli('token', 'generate', '-ttl', '600'))?.[1] as string;

    // The manifest's agent.json, with what needs a cluster replaced (as the runtime-layout test).
    const configMap = readFileSync(join(REPO, 'manifests/agent/configmap.yaml'), 'utf8');
    const json = /agent\.json: \|\n((?: {4}.*\n|\n)+)/.exec(configMap)?.[1];
    if (json === undefined) throw new Error('bench: no agent.json in manifests/agent/configmap.yaml');
    const config = JSON.parse(json) as { agent: Record<string, unknown>; plugins: Record<string, unknown>; health_checks: Record<string, unknown>; telemetry?: { Prometheus: Record<string, unknown>[] }[] };
    mkdirSync(join(dir, 'agent-data'), { mode: 0o700 });
    cpSync(join(dir, 'server-data/ca/bundle.pem'), join(dir, 'bundle.crt'));
    Object.assign(config.agent, {
      server_address: '127.0.0.1',
      server_port: String(port),
      socket_path: join(dir, 'agent.sock'),
      data_dir: join(dir, 'agent-data'),
      trust_bundle_path: join(dir, 'bundle.crt'),
      join_token: token,
    });
    config.plugins['NodeAttestor'] = { join_token: { plugin_data: {} } };
    config.plugins['WorkloadAttestor'] = { unix: { plugin_data: {} } };
    Object.assign(config.health_checks, { bind_address: '127.0.0.1', bind_port: String(await freePort()) });
    if (telemetry) Object.assign(config.telemetry?.[0]?.Prometheus[0] ?? {}, { host: '127.0.0.1', port: await freePort() });
    else delete config.telemetry;
    writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'probe.mjs'), PROBE);

    let agentLog = '';
    const env = { PATH: '/usr/bin:/bin', NODE_ENV: 'production', IDLE_PROBE_OUT: join(dir, 'probe.json') };
    agent = trackChild(spawn(NODE, [`--import=${join(dir, 'probe.mjs')}`, join(app, 'bin/spiffe-agent.js'), 'run', '-config', join(dir, 'agent.json')], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    agent.stdout?.on('data', (d: Buffer) => (agentLog += d.toString()));
    agent.stderr?.on('data', (d: Buffer) => (agentLog += d.toString()));
    const agentId = await waitFor('agent did not attest', 30_000, () => /"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/.exec(agentLog)?.[1], () => agentLog);
    await cli('entry', 'create', '-parentID', agentId, '-spiffeID', 'spiffe://example.org/idle', '-selector', `unix:uid:${process.getuid?.() ?? 0}`);
    await waitFor('the agent served no SVID', 60_000, () => {
      const r = spawnSync(NODE, [join(app, 'bin/spiffe-agent.js'), 'api', 'fetch', 'x509', '-socketPath', join(dir, 'agent.sock')], { cwd: app, encoding: 'utf8', timeout: 10_000 });
      return r.status === 0 ? true : undefined;
    }, () => agentLog);

    const pid = agent.pid as number;
    const series: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < idleSeconds; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      const m = readMemory(pid);
      if (m === undefined) throw new Error(`bench: the agent exited\n${agentLog.slice(-3000)}`);
      series.push(m.anonKiB);
      rss.push(m.rssKiB);
    }
    const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number;
    agent.kill('SIGUSR2');
    const usage = await waitFor('the probe did not answer', 5_000, () => (existsSync(join(dir, 'probe.json')) ? (JSON.parse(readFileSync(join(dir, 'probe.json'), 'utf8')) as AgentIdle['usage']) : undefined), () => agentLog);
    return { anonKiB: median(series.slice(-5)), rssKiB: median(rss.slice(-5)), series, usage };
  } finally {
    if (agent !== undefined) await stopChild(agent);
    await stopChild(server);
  }
}

async function main(): Promise<void> {
  const runs = Number(args.runs);
  const checkout = args.checkout ?? REPO;
  const app = args.layout ?? (await buildLayout(checkout));
  console.log(`- date: ${new Date().toISOString()}; Node ${process.version}; layout ${args.layout === undefined ? `built from ${checkout}` : app}`);
  if (!args['skip-modules']) await moduleCosts(app, runs);
  const rows: string[][] = [];
  for (const telemetry of [true, false]) {
    const results: AgentIdle[] = [];
    for (let i = 0; i < runs; i++) results.push(await idleAgent(app, telemetry, Number(args.idle)));
    results.sort((a, b) => a.anonKiB - b.anonKiB);
    const m = results[Math.floor(results.length / 2)] as AgentIdle;
    const spaces = Object.entries(m.usage.spaces).filter(([, v]) => v >= 512 * 1024).map(([k, v]) => `${k.replace(/_space$/, '')} ${(v / 2 ** 20).toFixed(1)}`).join(', ');
    rows.push([
      telemetry ? 'manifest config (Prometheus on)' : 'manifest config without telemetry',
      `${mib(m.anonKiB)} (runs: ${results.map((r) => (r.anonKiB / 1024).toFixed(1)).join(', ')})`,
      mib(m.rssKiB),
      mibB(m.usage.heapUsed),
      mibB(m.usage.heapTotal),
      mibB(m.usage.external),
      mibB(m.usage.arrayBuffers),
      spaces,
    ]);
  }
  console.log(`\n### Idle agent after one fetch (median of ${runs} agents; RssAnon median of the last 5 of ${args.idle} one-second samples)\n`);
  console.log(table(['agent', 'RssAnon', 'VmRSS', 'heap used', 'heap total', 'external', 'arrayBuffers', 'V8 spaces ≥ 0.5 MiB (MiB)'], rows));
}

try {
  await main();
} finally {
  await cleanupAll();
}
