/**
 * The real SPIRE v1.13.3 as child processes on temp dirs: `spire-server` (join_token, sqlite3),
 * `spire-agent` (join_token, unix attestor) and `oidc-discovery-provider`, from the binaries
 * bench/support/spire-build.ts builds and caches. A SPIRE server handle has the shape of our
 * server's (test/support/server-process.ts), so our agent fixture starts against it unchanged.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureSpireBinaries, type SpireBinaries } from '../../../bench/support/spire-build.ts';
import { freePort, type ServerHandle } from '../../support/server-process.ts';

const execFileAsync = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

let binaries: Promise<SpireBinaries> | undefined;

/** The cached SPIRE binaries (built by the suite's global setup; reused here). */
export function spireBinaries(): Promise<SpireBinaries> {
  binaries ??= ensureSpireBinaries({ oidcDiscoveryProvider: true });
  return binaries;
}

/** Runs a binary to completion; never throws for a non-zero exit. */
export async function runBinary(bin: string, args: string[], timeoutMs = 20_000, env?: Record<string, string>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(bin, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Like runBinary, but throws with the output when the exit code is not 0. */
export async function runOk(bin: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await runBinary(bin, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** A child process whose output is collected, stopped with SIGTERM (SIGKILL after 10 s). */
interface Proc {
  child: ChildProcess | undefined;
  output: string;
}

function launch(proc: Proc, bin: string, args: string[]): ChildProcess {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.child = child;
  child.stdout?.on('data', (d: Buffer) => (proc.output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (proc.output += d.toString()));
  return child;
}

async function stopProc(proc: Proc): Promise<number | null> {
  const child = proc.child;
  proc.child = undefined;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

async function waitUntil(proc: Proc, what: string, ready: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const child = proc.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child?.exitCode ?? child?.signalCode}):\n${proc.output.slice(-4000)}`);
    }
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms:\n${proc.output.slice(-4000)}`);
}

export interface SpireServerHandle extends ServerHandle {
  /** The server's trust bundle (PEM), written by start() for agents' trust_bundle_path. */
  readonly bundlePath: string;
}

/**
 * Starts the real `spire-server` (join_token, sqlite3, disk key manager) on 127.0.0.1 and a
 * temp dir; resolves once `spire-server healthcheck` passes and the bundle is written.
 */
export async function startSpireServer(setup: { trustDomain?: string; serverBlock?: string; /** Extra plugin blocks (e.g. NodeAttestor "k8s_psat"). */ plugins?: string } = {}): Promise<SpireServerHandle> {
  const bins = await spireBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'sna-spire-server-'));
  const trustDomain = setup.trustDomain ?? 'example.org';
  const socketPath = join(dir, 'api.sock');
  const dataDir = join(dir, 'data');
  const bundlePath = join(dir, 'bundle.pem');
  const port = await freePort();
  const configPath = join(dir, 'server.conf');
  await mkdir(dataDir);
  await writeFile(
    configPath,
    `server {
  bind_address = "127.0.0.1"
  bind_port = "${port}"
  socket_path = "${socketPath}"
  trust_domain = "${trustDomain}"
  data_dir = "${dataDir}"
  log_level = "DEBUG"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  default_jwt_svid_ttl = "5m"
${setup.serverBlock ?? ''}
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(dataDir, 'datastore.sqlite3')}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "${join(dataDir, 'keys.json')}"
    }
  }
${setup.plugins ?? ''}
}
`,
  );
  const proc: Proc = { child: undefined, output: '' };
  const cli = (...args: string[]): Promise<CliResult> => runBinary(bins.server, [...args, '-socketPath', socketPath]);
  const start = async (): Promise<void> => {
    launch(proc, bins.server, ['run', '-config', configPath]);
    await waitUntil(proc, 'spire-server', async () => (await cli('healthcheck')).code === 0);
    const bundle = await cli('bundle', 'show');
    if (bundle.code !== 0) throw new Error(`spire-server bundle show: ${bundle.stderr}`);
    await writeFile(bundlePath, bundle.stdout);
  };
  await start();
  return {
    dir,
    socketPath,
    port,
    trustDomain,
    bundlePath,
    get child() {
      return proc.child;
    },
    logs: () => proc.output,
    cli,
    stop: () => stopProc(proc),
    restart: start,
    async cleanup() {
      await stopProc(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A new join token from `spire-server token generate`. */
export async function spireJoinToken(server: ServerHandle): Promise<string> {
  const out = await server.cli('token', 'generate', '-ttl', '600');
  const token = /Token: (\S+)/.exec(out.stdout)?.[1];
  if (token === undefined) throw new Error(`token generate printed no token: ${out.stdout}${out.stderr}`);
  return token;
}

export interface SpireAgentHandle {
  dir: string;
  socketPath: string;
  logs(): string;
  /** Runs `spire-agent <args>` (add `-socketPath` yourself). */
  cli(...args: string[]): Promise<CliResult>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Starts it again on the same config and data dir; resolves once healthy. */
  start(): Promise<void>;
  /** Resolves with the exit code once the current process has exited by itself. */
  exited(): Promise<number | null>;
  cleanup(): Promise<void>;
}

/**
 * Starts the real `spire-agent` (join_token, disk key manager, unix workload attestor) against
 * `server` (ours or SPIRE's); resolves once `spire-agent healthcheck` passes.
 */
export async function startSpireAgent(setup: {
  server: Pick<ServerHandle, 'trustDomain' | 'port'>;
  joinToken: string;
  trustBundlePath: string;
  syncInterval?: string;
  /** Extra lines in the agent block (e.g. admin_socket_path). */
  extraAgent?: string;
}): Promise<SpireAgentHandle> {
  const bins = await spireBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'sna-spire-agent-'));
  await chmod(dir, 0o755);
  const socketPath = join(dir, 'agent.sock');
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'agent.conf');
  await mkdir(dataDir);
  await writeFile(
    configPath,
    `agent {
  data_dir = "${dataDir}"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "${setup.server.port}"
  socket_path = "${socketPath}"
  trust_bundle_path = "${setup.trustBundlePath}"
  trust_domain = "${setup.server.trustDomain}"
  join_token = "${setup.joinToken}"
  experimental {
    sync_interval = "${setup.syncInterval ?? '1s'}"
  }
${setup.extraAgent ?? ''}
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${dataDir}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
  );
  const proc: Proc = { child: undefined, output: '' };
  const cli = (...args: string[]): Promise<CliResult> => runBinary(bins.agent, args);
  const start = async (): Promise<void> => {
    launch(proc, bins.agent, ['run', '-config', configPath]);
    await waitUntil(proc, 'spire-agent', async () => (await cli('healthcheck', '-socketPath', socketPath)).code === 0);
  };
  await start();
  return {
    dir,
    socketPath,
    logs: () => proc.output,
    cli,
    stop: () => stopProc(proc),
    start,
    exited: () => {
      const child = proc.child;
      if (child === undefined) return Promise.resolve(null);
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      return new Promise((r) => child.once('exit', (code) => r(code)));
    },
    async cleanup() {
      await stopProc(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface OidcProviderHandle {
  /** http://127.0.0.1:<port> (the provider's only allowed domain is 127.0.0.1). */
  url: string;
  port: number;
  logs(): string;
  cleanup(): Promise<void>;
}

/**
 * Starts `oidc-discovery-provider` serving plain HTTP on 127.0.0.1 (for the domain 127.0.0.1),
 * its keys polled from a Workload API socket every `pollInterval`.
 */
export async function startOidcProvider(setup: {
  workloadSocketPath: string;
  trustDomain: string;
  pollInterval: string;
  /** The port to serve on (so a server's `jwt_issuer` can name the URL before it starts); default a free one. */
  port?: number;
}): Promise<OidcProviderHandle> {
  const bins = await spireBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'sna-oidc-'));
  const port = setup.port ?? (await freePort());
  const configPath = join(dir, 'oidc.conf');
  await writeFile(
    configPath,
    `log_level = "debug"
domains = ["127.0.0.1"]
insecure_addr = "127.0.0.1:${port}"
allow_insecure_scheme = true
workload_api {
  socket_path = "${setup.workloadSocketPath}"
  trust_domain = "${setup.trustDomain}"
  poll_interval = "${setup.pollInterval}"
}
`,
  );
  const proc: Proc = { child: undefined, output: '' };
  launch(proc, bins.oidcDiscoveryProvider as string, ['-config', configPath]);
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(proc, 'oidc-discovery-provider', async () => {
    try {
      return (await fetch(`${url}/keys`)).status === 200;
    } catch {
      return false;
    }
  });
  return {
    url,
    port,
    logs: () => proc.output,
    async cleanup() {
      await stopProc(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
