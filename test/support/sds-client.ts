/**
 * The Go SDS client of test/support/go/sds-client (go-control-plane's generated protos, grpc-go;
 * speaks StreamSecrets as Envoy does and does mTLS with the secrets it received): built once
 * per input hash and Go version next to the interop builds, and driven over JSON lines.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { cacheRoot, hashOf, mkdirShared, pruneSiblings, timed, type Toolchain } from './interop-builds.ts';
import { REPO } from './server-process.ts';

const execFileAsync = promisify(execFile);

export const SDS_CLIENT_DIR = join(REPO, 'test/support/go/sds-client');

/** Builds the client once per (go.mod, go.sum, main.go, Go version); returns the binary. */
export async function buildSdsClient(go: Toolchain): Promise<string> {
  if (!go.ok) throw new Error(go.reason);
  const inputs = ['go.mod', 'go.sum', 'main.go'].map((f) => readFileSync(join(SDS_CLIENT_DIR, f)));
  const dir = join(cacheRoot(), `sdsclient-${hashOf([go.version, ...inputs])}`);
  const bin = join(dir, 'sds-client');
  if (existsSync(bin)) return bin;
  await mkdirShared(dir);
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local', CGO_ENABLED: '0' };
  if (env['HOME'] === undefined && env['GOCACHE'] === undefined) {
    env['GOCACHE'] = join(cacheRoot(), 'gocache');
    env['GOPATH'] = join(cacheRoot(), 'gopath');
    env['GOFLAGS'] += ' -modcacherw';
  }
  const run = async (args: string[]): Promise<void> => {
    try {
      await execFileAsync(go.bin, args, { cwd: SDS_CLIENT_DIR, env, timeout: 600_000, maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`go ${args.join(' ')} (sds-client) failed: ${e.stderr ?? e.message}`);
    }
  };
  await timed('go mod download (sds-client)', () => run(['mod', 'download']));
  const tmp = `${bin}.tmp-${process.pid}`;
  await timed(`go build sds-client (${go.version})`, () => run(['build', '-o', tmp, '.']));
  await chmod(tmp, 0o755);
  await rename(tmp, bin);
  await pruneSiblings(dir);
  return bin;
}

/** One JSON event the client printed. */
export type SdsEvent = Record<string, unknown> & { event: string };

/** A resource of a response, as the client summarises it. */
export interface SdsResource {
  name: string;
  kind: 'tls_certificate' | 'trusted_ca' | 'spiffe_validator';
  spiffe_ids?: string[];
  serial?: string;
  chain?: number;
  key_type?: string;
  roots?: string[];
  validator?: string;
  trust_domains?: Array<{ name: string; roots: string[] }>;
}

/** A running client: one process, one connection, at most one StreamSecrets stream. */
export class SdsClient {
  readonly #child: ChildProcess;
  readonly #events: SdsEvent[] = [];
  readonly #waiters: Array<(e: SdsEvent) => void> = [];
  #stderr = '';
  #exited = false;
  readonly pid: number;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.pid = child.pid as number;
    child.stderr?.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    child.once('exit', () => {
      this.#exited = true;
      for (const w of this.#waiters.splice(0)) w({ event: 'exited', stderr: this.#stderr });
    });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const event = JSON.parse(line) as SdsEvent;
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) waiter(event);
      else this.#events.push(event);
    });
  }

  /** Starts the client as `uid`/`gid` against the socket; resolves once it is ready. */
  static async start(bin: string, socketPath: string, ids: { uid: number; gid: number }): Promise<SdsClient> {
    const child = spawn(bin, ['-socket', socketPath], { stdio: ['pipe', 'pipe', 'pipe'], uid: ids.uid, gid: ids.gid, env: { PATH: process.env['PATH'] } });
    const client = new SdsClient(child);
    const ready = await client.#next();
    if (ready.event !== 'ready') throw new Error(`sds-client did not start: ${JSON.stringify(ready)} ${client.#stderr}`);
    return client;
  }

  #next(): Promise<SdsEvent> {
    const queued = this.#events.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#exited) return Promise.resolve({ event: 'exited', stderr: this.#stderr });
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Runs one command and returns the event it printed. */
  async run(command: Record<string, unknown>): Promise<SdsEvent> {
    this.#child.stdin?.write(`${JSON.stringify(command)}\n`);
    return this.#next();
  }

  /** Sends a StreamSecrets request. */
  async send(fields: { names: string[]; version?: string; nonce?: string; error?: string; node?: Record<string, unknown> }): Promise<void> {
    const e = await this.run({ op: 'send', ...fields });
    if (e.event !== 'sent') throw new Error(`send: ${JSON.stringify(e)}`);
  }

  /** The next response or the stream's end. */
  recv(timeoutMs = 30_000): Promise<SdsEvent> {
    return this.run({ op: 'recv', timeout_ms: timeoutMs });
  }

  /** Stops the process (closing its connection). */
  async stop(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.stdin?.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
