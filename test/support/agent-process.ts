/**
 * Starts the real `spiffe-agent` as a child process against a test server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO, type ServerHandle } from './server-process.ts';

export const AGENT_BIN = join(REPO, 'bin/spiffe-agent.js');

export interface AgentHandle {
  dir: string;
  socketPath: string;
  /** admin_socket_path: configured (and listening once started) only with {@link AgentSetup.authorizedDelegates}. */
  adminSocketPath: string;
  dataDir: string;
  configPath: string;
  child: ChildProcess | undefined;
  logs(): string;
  /** Waits until a log line matches. */
  waitForLog(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** Resolves with the exit code once the current process has exited by itself. */
  exited(): Promise<number | null>;
  /** Starts the process again on the same data dir (and token, which it must not need). */
  start(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface AgentSetup {
  server: ServerHandle;
  /** The join token; omit when `nodeAttestor` names another attestor. */
  joinToken?: string;
  /** A NodeAttestor block replacing join_token (e.g. k8s_psat). */
  nodeAttestor?: string;
  syncInterval?: string;
  extraAgent?: string;
  /** Gives the agent an admin socket (AgentHandle.adminSocketPath) with these authorized_delegates. */
  authorizedDelegates?: readonly string[];
  /** Extra plugin blocks (e.g. another WorkloadAttestor). */
  extraPlugins?: string;
  /** Extra top-level blocks (e.g. `health_checks {…}`, `telemetry {…}`). */
  extraTopLevel?: string;
  /** trust_bundle_path; default: the server's CA bundle. */
  trustBundlePath?: string;
}

/** A `health_checks` block listening on 127.0.0.1:`port` with `/live` and `/ready`, for `extraTopLevel`. */
export function healthChecksBlock(port: number): string {
  return `health_checks {
  listener_enabled = true
  bind_address = "127.0.0.1"
  bind_port = ${port}
  live_path = "/live"
  ready_path = "/ready"
}`;
}

export async function startAgentProcess(setup: AgentSetup): Promise<AgentHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sna-agent-'));
  // Workloads of other uids must reach the socket below this directory.
  await chmod(dir, 0o755);
  const socketPath = join(dir, 'sockets', 'agent.sock');
  const adminSocketPath = join(dir, 'admin', 'admin.sock');
  const delegates = setup.authorizedDelegates;
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'agent.conf');
  await writeFile(
    configPath,
    `agent {
  trust_domain = "${setup.server.trustDomain}"
  server_address = "127.0.0.1"
  server_port = ${setup.server.port}
  socket_path = "${socketPath}"
  data_dir = "${dataDir}"
  log_level = "DEBUG"
  trust_bundle_path = "${setup.trustBundlePath ?? join(setup.server.dir, 'data', 'ca', 'bundle.pem')}"
${setup.joinToken === undefined ? '' : `  join_token = "${setup.joinToken}"`}
  experimental {
    sync_interval = "${setup.syncInterval ?? '500ms'}"
  }
${delegates === undefined ? '' : `  admin_socket_path = "${adminSocketPath}"\n  authorized_delegates = ${JSON.stringify(delegates)}`}
${setup.extraAgent ?? ''}
}
plugins {
${setup.nodeAttestor ?? '  NodeAttestor "join_token" {\n    plugin_data {}\n  }'}
  KeyManager "disk" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
${setup.extraPlugins ?? ''}
}
${setup.extraTopLevel ?? ''}
`,
  );
  let output = '';
  let child: ChildProcess | undefined;

  const waitForLog = async (pattern: RegExp, timeoutMs = 20_000, from = 0): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const m = pattern.exec(output.slice(from));
      if (m !== null) return m;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`agent log did not match ${pattern} within ${timeoutMs} ms:\n${output.slice(-4000)}`);
  };

  const start = async (): Promise<void> => {
    const from = output.length;
    const proc = spawn(NODE, [AGENT_BIN, 'run', '-config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitForLog(delegates === undefined ? /"msg":"workload API listening"/ : /"msg":"admin API listening"/, 20_000, from);
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return proc?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  await start();
  return {
    dir,
    socketPath,
    adminSocketPath,
    dataDir,
    configPath,
    get child() {
      return child;
    },
    logs: () => output,
    waitForLog,
    stop: () => stop('SIGTERM'),
    kill: async () => void (await stop('SIGKILL')),
    exited: () => {
      const proc = child;
      if (proc === undefined) return Promise.resolve(null);
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((r) => proc.once('exit', (code) => r(code)));
    },
    start,
    async cleanup() {
      await stop('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
