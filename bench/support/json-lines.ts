/**
 * A long-running measurement client that prints one JSON object per line on stdout (bench/go's
 * `streams`, `bundle` and `wait -hold` modes): read its lines in order as they come, close its
 * stdin to tell it to finish.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { stopChild, trackChild } from './cleanup.ts';

export class JsonLineChild {
  readonly child: ChildProcess;
  readonly #lines: unknown[] = [];
  #read = 0;
  #buf = '';
  #closed: string | undefined;
  #wake: (() => void) | undefined;

  /** Starts `cmd argv` (tracked, so Ctrl-C ends it too); its stderr goes to ours. */
  constructor(cmd: string, argv: readonly string[]) {
    this.child = trackChild(spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'inherit'] }));
    this.child.stdin?.on('error', () => {}); // EPIPE when it has already exited
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line.startsWith('{')) this.#lines.push(JSON.parse(line) as unknown);
      }
      this.#wake?.();
    });
    // 'close' (not 'exit'): stdout has been read to its end by then.
    this.child.once('close', (code, signal) => {
      this.#closed = `exited with ${signal ?? code}`;
      this.#wake?.();
    });
  }

  /** The next line not returned yet (as T: the caller knows the client's mode), waiting up to `timeoutMs`. */
  async next<T>(what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#read < this.#lines.length) return this.#lines[this.#read++] as T;
      if (this.#closed !== undefined) throw new Error(`${what}: the client ${this.#closed} before its next line`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: no line from the client within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Closes its stdin, gives it `graceMs` to finish, then ends it. */
  async close(graceMs = 10_000): Promise<void> {
    this.child.stdin?.end();
    if (this.#closed === undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.child.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await stopChild(this.child);
  }
}
