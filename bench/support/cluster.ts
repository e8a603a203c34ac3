/**
 * Starts a real server and a real agent as child processes from a checkout directory (this
 * repo by default, or an older commit's worktree), each through that checkout's
 * `bin/spiffe-*.js` and `node_modules/.bin/node`, and registers an entry for this process's
 * uid, so one benchmark script can measure any commit the same way.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { stopChild, trackChild, trackDir } from './cleanup.ts';
import { fetchFirst, newClient } from './fetch-client.ts';

const execFileAsync = promisify(execFile);

/** This repository's root. */
export const REPO = resolve(import.meta.dirname, '../..');

/** A source tree whose server and agent a benchmark runs. */
export interface Checkout {
  readonly dir: string;
  readonly node: string;
  readonly serverBin: string;
  readonly agentBin: string;
  /** `git describe`-like label: short commit, plus "+changes" when the tree is dirty. */
  readonly label: string;
  /** Whether bin/ will run a compiled dist/ rather than the TypeScript sources. */
  readonly compiled: boolean;
}

/** Resolves a checkout directory (default: this repo) and checks it has what the bench runs. */
export async function resolveCheckout(dir: string | undefined): Promise<Checkout> {
  const root = resolve(dir ?? REPO);
  const node = join(root, 'node_modules/.bin/node');
  const serverBin = join(root, 'bin/spiffe-server.js');
  const agentBin = join(root, 'bin/spiffe-agent.js');
  for (const p of [node, serverBin, agentBin]) if (!existsSync(p)) throw new Error(`bench: ${p} is missing (run npm ci in ${root})`);
  let label = 'unknown';
  try {
    const { stdout } = await execFileAsync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']);
    const { stdout: dirty } = await execFileAsync('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin']);
    label = `${stdout.trim()}${dirty.trim() === '' ? '' : '+uncommitted src changes'}`;
  } catch {
    // not a git tree: keep "unknown"
  }
  return { dir: root, node, serverBin, agentBin, label, compiled: existsSync(join(root, 'dist/agent/cli/main.js')) };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => res(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = logFile !== undefined && existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
  throw new Error(`bench: ${what} within ${timeoutMs} ms\n${tail}`);
}

/** A running server + agent pair. */
export interface Cluster {
  readonly checkout: Checkout;
  readonly dir: string;
  /** The agent's Workload API socket. */
  readonly socketPath: string;
  readonly agent: ChildProcess;
  readonly agentPid: number;
  readonly agentLog: string;
  /** Stops the agent, then the server (the temp dir goes at cleanupAll). */
  stop(): Promise<void>;
}

function spawnLogged(node: string, args: string[], logFile: string, cwd: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    // Logs go to a file: a pipe nobody drains fast enough would slow the process down.
    return trackChild(spawn(node, args, { cwd, stdio: ['ignore', fd, fd] }));
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts the server, creates a join token and an entry `spiffe://example.org/bench` for
 * `unix:uid:<our uid>`, starts the agent (log level INFO, disk key manager, default sync
 * interval; with `prometheusPort`, also its Prometheus telemetry on that port) and resolves
 * once FetchX509SVID serves that entry.
 */
export async function startCluster(checkout: Checkout, opts: { prometheusPort?: number } = {}): Promise<Cluster> {
  const dir = trackDir(mkdtempSync(join(tmpdir(), 'sna-hardening-bench-')));
  chmodSync(dir, 0o755);
  const adminSocket = join(dir, 'admin.sock');
  const socketPath = join(dir, 'agent', 'api.sock');
  const serverLog = join(dir, 'server.log');
  const agentLog = join(dir, 'agent.log');
  const serverConf = join(dir, 'server.conf');
  const agentConf = join(dir, 'agent.conf');
  const port = await freePort();
  writeFileSync(
    serverConf,
    `server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port = ${port}
  socket_path = "${adminSocket}"
  data_dir = "${join(dir, 'server-data')}"
  log_level = "INFO"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`,
  );
  const server = spawnLogged(checkout.node, [checkout.serverBin, 'run', '-config', serverConf], serverLog, checkout.dir);
  await waitUntil('server did not start', 30_000, () => {
    if (server.exitCode !== null) throw new Error(`bench: server exited with ${server.exitCode}\n${readFileSync(serverLog, 'utf8').slice(-3000)}`);
    return existsSync(serverLog) && readFileSync(serverLog, 'utf8').includes('server started');
  }, serverLog);

  const cli = async (...args: string[]): Promise<string> => {
    const { stdout } = await execFileAsync(checkout.node, [checkout.serverBin, ...args, '-socketPath', adminSocket], { cwd: checkout.dir, timeout: 30_000 });
    return stdout;
  };
  const token = /Token: (\S+)/.exec(await cli('token', 'generate', '-ttl', '600'))?.[1];
  if (token === undefined) throw new Error('bench: token generate printed no token');
  const uid = process.getuid?.() ?? 0;
  await cli('entry', 'create', '-parentID', `spiffe://example.org/spire/agent/join_token/${token}`, '-spiffeID', 'spiffe://example.org/bench', '-selector', `unix:uid:${uid}`);

  writeFileSync(
    agentConf,
    `agent {
  trust_domain = "example.org"
  server_address = "127.0.0.1"
  server_port = ${port}
  socket_path = "${socketPath}"
  data_dir = "${join(dir, 'agent-data')}"
  log_level = "INFO"
  trust_bundle_path = "${join(dir, 'server-data', 'ca', 'bundle.pem')}"
  join_token = "${token}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
${opts.prometheusPort === undefined ? '' : `telemetry {\n  Prometheus {\n    host = "127.0.0.1"\n    port = ${opts.prometheusPort}\n  }\n}\n`}`,
  );
  const agent = spawnLogged(checkout.node, [checkout.agentBin, 'run', '-config', agentConf], agentLog, checkout.dir);
  const agentPid = agent.pid;
  if (agentPid === undefined) throw new Error('bench: agent did not spawn');
  await waitUntil('agent socket did not appear', 30_000, () => {
    if (agent.exitCode !== null) throw new Error(`bench: agent exited with ${agent.exitCode}\n${readFileSync(agentLog, 'utf8').slice(-3000)}`);
    return existsSync(socketPath);
  }, agentLog);
  const probe = newClient(socketPath);
  try {
    await waitUntil('agent did not serve the entry', 60_000, async () => {
      try {
        await fetchFirst(probe, 2_000);
        return true;
      } catch {
        return false;
      }
    }, agentLog);
  } finally {
    probe.close();
  }
  return {
    checkout,
    dir,
    socketPath,
    agent,
    agentPid,
    agentLog,
    async stop() {
      await stopChild(agent);
      await stopChild(server);
    },
  };
}

/** V8 heap and external memory of the agent, in KiB, from prom-client's default metrics. */
export interface HeapStats {
  readonly heapTotalKiB: number;
  readonly heapUsedKiB: number;
  readonly externalKiB: number;
}

/** Scrapes the agent's /metrics on `port` for its heap figures; undefined if unavailable. */
export async function scrapeHeap(port: number): Promise<HeapStats | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const get = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text)?.[1] ?? NaN) / 1024;
    return { heapTotalKiB: get('nodejs_heap_size_total_bytes'), heapUsedKiB: get('nodejs_heap_size_used_bytes'), externalKiB: get('nodejs_external_memory_bytes') };
  } catch {
    return undefined;
  }
}
