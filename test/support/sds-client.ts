/**
 * The Go SDS client of test/support/go/sds-client (go-control-plane's generated protos, grpc-go;
 * speaks StreamSecrets as Envoy does and does mTLS with the secrets it received): built once
 * per input hash and Go version next to the interop builds, and driven over JSON lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { buildGoProgram, type Toolchain } from './interop-builds.ts';

/** Builds the client once per (go.mod, go.sum, main.go, Go version); returns the binary. */
export function buildSdsClient(go: Toolchain): Promise<string> {
  return buildGoProgram(go, 'sds-client');
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
