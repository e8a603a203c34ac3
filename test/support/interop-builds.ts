/**
 * Builds of the client-library programs of test/interop, shared by the conformance suite and
 * the integration tests that drive a real go-spiffe client: toolchain detection, and the Go
 * program built once per input hash under node_modules/.cache/sna-interop/ (readable by the
 * other uids the conformance suite runs workloads as).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './server-process.ts';

const execFileAsync = promisify(execFile);

/** The go-spiffe program's module (go.mod, go.sum, main.go). */
export const GO_DIR = join(REPO, 'test/interop/go');

/** A toolchain found on this machine, or why not. */
export interface Toolchain {
  ok: boolean;
  /** Why it is missing and what to install. */
  reason: string;
  bin: string;
  version: string;
}

/** Whether other users can run (or, for a directory, enter) `path` and every directory above it. */
export function reachableByOthers(path: string): boolean {
  try {
    const real = realpathSync(path);
    if ((statSync(real).mode & 0o001) === 0) return false;
    for (let dir = dirname(real); ; dir = dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) return false;
      if (dir === dirname(dir)) return true;
    }
  } catch {
    return false;
  }
}

/** Go on PATH (or SNA_INTEROP_GO, or /usr/local/go), if it is new enough for go-spiffe. */
export function detectGo(): Toolchain {
  const onPath = (process.env['PATH'] ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, 'go')));
  const bin = process.env['SNA_INTEROP_GO'] ?? (onPath || !existsSync('/usr/local/go/bin/go') ? 'go' : '/usr/local/go/bin/go');
  try {
    const version = execFileSync(bin, ['env', 'GOVERSION'], { encoding: 'utf8', timeout: 20_000 }).trim();
    const [major, minor] = (/^go(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
    if (major === undefined || minor === undefined || major < 1 || (major === 1 && minor < 24)) {
      return { ok: false, reason: `go-spiffe needs Go >= 1.24, found ${version}: install a newer Go`, bin, version };
    }
    return { ok: true, reason: '', bin, version };
  } catch (err) {
    return { ok: false, reason: `no Go toolchain (${(err as Error).message.split('\n')[0]}): install Go >= 1.24 and put \`go\` on PATH (or set SNA_INTEROP_GO)`, bin, version: '' };
  }
}

/** Where builds are cached: node_modules/.cache/sna-interop when other uids can reach it. */
export function cacheRoot(): string {
  const preferred = join(REPO, 'node_modules', '.cache', 'sna-interop');
  const base = join(REPO, 'node_modules');
  if (existsSync(base) && reachableByOthers(base)) return preferred;
  return join(tmpdir(), `sna-interop-cache-${process.getuid?.() ?? 0}`);
}

/** A short hash of build inputs, for cache directory names. */
export function hashOf(parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
}

/** Removes older builds of the same kind (`go-*` or `py-*`) next to `keep`. */
export async function pruneSiblings(keep: string): Promise<void> {
  const prefix = basename(keep).split('-')[0] + '-';
  for (const name of await readdir(dirname(keep)).catch(() => [] as string[])) {
    if (name.startsWith(prefix) && name !== basename(keep)) await rm(join(dirname(keep), name), { recursive: true, force: true });
  }
}

/** Creates a directory other uids can enter. */
export async function mkdirShared(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
}

/** Runs `fn`, logging how long it took. */
export function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  return fn().then((v) => {
    console.log(`[interop] ${label} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return v;
  });
}

/** Builds the Go program once per (go.mod, go.sum, main.go, Go version); returns the binary. */
export async function buildGo(go: Toolchain): Promise<string> {
  if (!go.ok) throw new Error(go.reason);
  const inputs = ['go.mod', 'go.sum', 'main.go'].map((f) => readFileSync(join(GO_DIR, f)));
  const dir = join(cacheRoot(), `go-${hashOf([go.version, ...inputs])}`);
  const bin = join(dir, 'interop');
  if (existsSync(bin)) {
    console.log(`[interop] go-spiffe program cached: ${bin}`);
    return bin;
  }
  await mkdirShared(dir);
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local', CGO_ENABLED: '0' };
  if (env['HOME'] === undefined && env['GOCACHE'] === undefined) {
    // Go keeps its caches under $HOME; without one, keep them next to the binary cache.
    env['GOCACHE'] = join(cacheRoot(), 'gocache');
    env['GOPATH'] = join(cacheRoot(), 'gopath');
    env['GOFLAGS'] += ' -modcacherw';
  }
  const run = async (args: string[]): Promise<void> => {
    try {
      await execFileAsync(go.bin, args, { cwd: GO_DIR, env, timeout: 600_000, maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`go ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
    }
  };
  await timed('go mod download', () => run(['mod', 'download']));
  const tmp = `${bin}.tmp-${process.pid}`;
  await timed(`go build (${go.version})`, () => run(['build', '-o', tmp, '.']));
  await chmod(tmp, 0o755);
  await rename(tmp, bin);
  await pruneSiblings(dir);
  return bin;
}

/**
 * Builds a Go program of test/support/go/<name> (its go.mod, go.sum and main.go, dependencies
 * from the Go module proxy) once per input hash and Go version; returns the binary, cached
 * under {@link cacheRoot} where other uids can run it.
 */
export async function buildGoProgram(go: Toolchain, name: string): Promise<string> {
  if (!go.ok) throw new Error(go.reason);
  const dir = join(REPO, 'test/support/go', name);
  const inputs = ['go.mod', 'go.sum', 'main.go'].filter((f) => existsSync(join(dir, f))).map((f) => readFileSync(join(dir, f)));
  const out = join(cacheRoot(), `${name}-${hashOf([go.version, ...inputs])}`);
  const bin = join(out, name);
  if (existsSync(bin)) return bin;
  await mkdirShared(out);
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local', CGO_ENABLED: '0' };
  if (env['HOME'] === undefined && env['GOCACHE'] === undefined) {
    env['GOCACHE'] = join(cacheRoot(), 'gocache');
    env['GOPATH'] = join(cacheRoot(), 'gopath');
    env['GOFLAGS'] += ' -modcacherw';
  }
  const tmp = `${bin}.tmp-${process.pid}`;
  try {
    await timed(`go build ${name} (${go.version})`, () => execFileAsync(go.bin, ['build', '-o', tmp, '.'], { cwd: dir, env, timeout: 600_000, maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`go build ${name} failed: ${e.stderr ?? e.message}`);
  }
  await chmod(tmp, 0o755);
  await rename(tmp, bin);
  await pruneSiblings(out);
  return bin;
}
