/**
 * Starts the real `spiffe-server` as a child process on a temp data dir, and runs the real
 * CLI against its admin socket. Everything is cleaned up by `stop()`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createServer } from 'node:net';

const execFileAsync = promisify(execFile);

export const REPO = resolve(import.meta.dirname, '../..');
export const NODE = process.execPath;
export const SERVER_BIN = join(REPO, 'bin/spiffe-server.js');

export interface ServerHandle {
  dir: string;
  socketPath: string;
  port: number;
  trustDomain: string;
  /** The process; undefined after stop(). */
  child: ChildProcess | undefined;
  /** Everything the server logged so far. */
  logs(): string;
  /** Runs `spiffe-server <args> -socketPath <admin socket>`. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Starts the process again on the same data dir. */
  restart(): Promise<void>;
  /** stop() and remove the temp dir. */
  cleanup(): Promise<void>;
}

export interface ServerSetup {
  trustDomain?: string;
  /** Extra lines inside `server { … }`. */
  serverBlock?: string;
  /** Extra plugin blocks. */
  plugins?: string;
  /** A fixed TLS port, so restarts keep the address agents were configured with. Default: a free port. */
  port?: number;
}

/** A TCP port that is free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/** A new join token from the server CLI (`token generate`). */
export async function generateJoinToken(server: ServerHandle): Promise<string> {
  const out = await server.cli('token', 'generate');
  const token = /Token: (\S+)/.exec(out.stdout)?.[1];
  if (token === undefined) throw new Error(`token generate printed no token: ${out.stdout}${out.stderr}`);
  return token;
}

async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(NODE, [SERVER_BIN, ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Writes a config and starts the server; resolves once it serves its admin socket. */
export async function startServerProcess(setup: ServerSetup = {}): Promise<ServerHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sna-server-'));
  const trustDomain = setup.trustDomain ?? 'example.org';
  const socketPath = join(dir, 'api.sock');
  const configPath = join(dir, 'server.conf');
  await writeFile(
    configPath,
    `server {
  trust_domain = "${trustDomain}"
  bind_address = "127.0.0.1"
  bind_port = ${setup.port ?? (await freePort())}
  socket_path = "${socketPath}"
  data_dir = "${join(dir, 'data')}"
  log_level = "DEBUG"
${setup.serverBlock ?? ''}
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
${setup.plugins ?? ''}
}
`,
  );
  let output = '';
  let child: ChildProcess | undefined;
  let port = 0;

  const launch = async (): Promise<void> => {
    const proc = spawn(NODE, [SERVER_BIN, 'run', '-config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const deadline = Date.now() + 20_000;
    const startedAt = output.length;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`server exited with ${proc.exitCode ?? proc.signalCode}:\n${output}`);
      const match = /"address":"127\.0\.0\.1:(\d+)".*"server started"/.exec(output.slice(startedAt));
      if (match !== null) {
        port = Number(match[1]);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill('SIGKILL');
    throw new Error(`server did not start within 20s:\n${output}`);
  };

  const stop = async (): Promise<number | null> => {
    const proc = child;
    child = undefined;
    // A process killed by a signal has exitCode null and signalCode set: it is gone too.
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return proc?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  await launch();
  const handle: ServerHandle = {
    dir,
    socketPath,
    get port() {
      return port;
    },
    trustDomain,
    get child() {
      return child;
    },
    logs: () => output,
    cli: (...args) => runCli([...args, '-socketPath', socketPath]),
    stop,
    restart: launch,
    async cleanup() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Reads the server's CA bundle file (PEM), as an agent's trust_bundle_path would. */
export function readBundlePem(handle: ServerHandle): Promise<string> {
  return readFile(join(handle.dir, 'data', 'ca', 'bundle.pem'), 'utf8');
}
