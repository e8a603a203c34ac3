/**
 * The Go server of test/support/go/tls7076 (a gRPC-over-TLS listener configured as
 * spire-server 1.15.0–1.15.1, reproducing spiffe/spire#7076): built once per input hash and
 * Go version, cached next to the interop builds, and started in a temporary directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGoProgram, type Toolchain } from './interop-builds.ts';

/** Whether `go` is new enough: the condition exists only in Go >= 1.26's crypto/tls. */
export function goReproduces7076(go: Toolchain): { ok: boolean; reason: string } {
  if (!go.ok) return { ok: false, reason: go.reason };
  const [major, minor] = (/^go(\d+)\.(\d+)/.exec(go.version) ?? []).slice(1).map(Number);
  if (major === 1 && minor !== undefined && minor < 26) {
    return { ok: false, reason: `spiffe/spire#7076 needs Go >= 1.26's crypto/tls (older versions take the ticket keys from the per-client config), found ${go.version}` };
  }
  return { ok: true, reason: '' };
}

/** Builds the server once per (go.mod, main.go, Go version) with {@link buildGoProgram}; returns the binary. */
export function buildTls7076(go: Toolchain): Promise<string> {
  return buildGoProgram(go, 'tls7076');
}

/** A running tls7076 server. */
export interface Tls7076Server {
  /** 127.0.0.1:port */
  address: string;
  port: number;
  /** Where ca.pem, agent.pem and agent-key.pem are. */
  dir: string;
  caPem: string;
  /** The agent SVID the server's CA issued (`spiffe://<td>/spire/agent/join_token/tls7076`). */
  agentPem: string;
  agentKeyPem: string;
  /** The server's log so far (ClientHellos, handshake errors, RPCs). */
  logs(): string;
  /** Makes it behave as the fixed release (TLS 1.3 works again); resolves once it says so. */
  upgrade(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the server for trust domain `td`; agent SVIDs are valid for `agentTtl` (Go duration) from an hour ago. */
export async function startTls7076(bin: string, td: string, agentTtl = '24h'): Promise<Tls7076Server> {
  const dir = await mkdtemp(join(tmpdir(), 'tls7076-'));
  const child: ChildProcess = spawn(bin, ['-td', td, '-out', dir, '-agent-ttl', agentTtl], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tls7076 did not start: ${log}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\S+)\n/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`tls7076 exited (${code}): ${log}`)));
  });
  const read = (name: string): Promise<string> => readFile(join(dir, name), 'utf8');
  return {
    address,
    port: Number(address.split(':')[1]),
    dir,
    caPem: await read('ca.pem'),
    agentPem: await read('agent.pem'),
    agentKeyPem: await read('agent-key.pem'),
    logs: () => log,
    async upgrade() {
      child.kill('SIGUSR1');
      const deadline = Date.now() + 5_000;
      while (!/^upgraded$/m.test(log)) {
        if (Date.now() > deadline) throw new Error(`tls7076 did not upgrade: ${log.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
