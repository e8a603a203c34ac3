/**
 * One place that ends every process a benchmark started and removes its temp dirs, on a
 * normal finish, on an error and on Ctrl-C/SIGTERM/SIGHUP.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let installed = false;
let exiting = false;

/** Ends `child` with SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Registers a child to be ended by {@link cleanupAll} (and on signals or a crash). */
export function trackChild(child: ChildProcess): ChildProcess {
  installHandlers();
  // Started while cleaning up: it would outlive the cleanup.
  if (exiting) child.kill('SIGKILL');
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Registers a directory to be removed by {@link cleanupAll}. */
export function trackDir(dir: string): string {
  installHandlers();
  dirs.add(dir);
  return dir;
}

/** Ends every tracked child (SIGTERM, then SIGKILL) and removes every tracked directory. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

/** Synchronous last resort (process 'exit'): SIGKILL whatever is left, remove the dirs. */
function killAllNow(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

function installHandlers(): void {
  if (installed) return;
  installed = true;
  const bail = (code: number) => (why: unknown): void => {
    if (exiting) return;
    exiting = true;
    if (why instanceof Error) process.stderr.write(`${why.stack ?? why.message}\n`);
    else if (typeof why === 'string') process.stderr.write(`bench: ${why}, cleaning up\n`);
    void cleanupAll().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => bail(130)('SIGINT'));
  process.once('SIGTERM', () => bail(143)('SIGTERM'));
  process.once('SIGHUP', () => bail(129)('SIGHUP'));
  process.on('uncaughtException', bail(1));
  process.on('unhandledRejection', bail(1));
  process.once('exit', killAllNow);
}
