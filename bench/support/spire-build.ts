/**
 * SPIRE's own `spire-server` and `spire-agent` (and, on request, `oidc-discovery-provider`),
 * built from the Go module proxy into a cache directory outside the repository, for benchmarks
 * (bench/side-by-side.ts) and the real-SPIRE suite (test/spire) that run the real thing:
 *
 *   <cache>/spiffe-node-agent/spire-v<version>/      a throwaway Go module ("x")
 *     go.mod, go.sum                                  `go get -tool …/cmd/spire-{server,agent}@v<version>`
 *                                                     (and …/support/oidc-discovery-provider)
 *     bin/spire-server, bin/spire-agent               `go build -o bin/ …`
 *     bin/oidc-discovery-provider                     built only when asked for, and only it when
 *                                                     the other two are already there
 *     build.log                                       the last build's output
 *     download.log                                    the last downloadSpireModules() output
 *                                                     (`go get -tool` only, for CI to run early)
 *
 * <cache> is $XDG_CACHE_HOME, else ~/.cache (Go keeps its build cache there too, in go-build,
 * unless GOCACHE says otherwise). A cold build downloads SPIRE's dependencies and
 * compiles them (6–20 minutes on 2 cores; 21 min measured here on a busy machine, 5 of them
 * downloading); afterwards the binaries are reused as they are
 * (their `-version` output is checked), and a rebuild reuses Go's module and build caches.
 * SPIRE_BIN_DIR=<dir> uses binaries from elsewhere instead (nothing is built).
 *
 * Needs `go` (1.24 or newer, for `go get -tool`) on PATH, or GO=<path to go>.
 */
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const SPIRE_VERSION = '1.13.3';

export interface SpireBinaries {
  readonly server: string;
  readonly agent: string;
  /** `oidc-discovery-provider`, when asked for with `oidcDiscoveryProvider: true`. */
  readonly oidcDiscoveryProvider?: string;
  /** What `spire-agent -version` printed, e.g. "1.13.3". */
  readonly version: string;
  readonly dir: string;
  /** Whether this call built them (false: reused). */
  readonly built: boolean;
  /** Wall-clock time of the build, when this call built them. */
  readonly buildMs?: number;
}

/** The Go packages of the binaries, by binary name (all in the github.com/spiffe/spire module). */
const PACKAGES: Readonly<Record<string, string>> = {
  'spire-server': 'github.com/spiffe/spire/cmd/spire-server',
  'spire-agent': 'github.com/spiffe/spire/cmd/spire-agent',
  'oidc-discovery-provider': 'github.com/spiffe/spire/support/oidc-discovery-provider',
};

/** The cache directory for one SPIRE version. */
export function spireCacheDir(version = SPIRE_VERSION): string {
  const base = process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache');
  return join(base, 'spiffe-node-agent', `spire-v${version}`);
}

/** What `<bin> -version` prints (SPIRE writes it to stderr), trimmed; undefined if it fails. */
async function binaryVersion(bin: string): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await execFileAsync(bin, ['-version'], { timeout: 20_000 });
    return `${stdout}${stderr}`.trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    const out = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
    return /^\d+\.\d+\.\d+/.test(out) ? out : undefined;
  }
}

function paths(binDir: string, names: readonly string[]): { server: string; agent: string; oidcDiscoveryProvider?: string } {
  return {
    server: join(binDir, 'spire-server'),
    agent: join(binDir, 'spire-agent'),
    ...(names.includes('oidc-discovery-provider') ? { oidcDiscoveryProvider: join(binDir, 'oidc-discovery-provider') } : {}),
  };
}

function run(cmd: string, args: string[], cwd: string, logFd: number, env: NodeJS.ProcessEnv): Promise<void> {
  writeFileSync(logFd, `$ ${cmd} ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', logFd, logFd] });
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? code}); see build.log or download.log in ${cwd}`))));
  });
}

/**
 * Returns spire-server and spire-agent of `version` (and oidc-discovery-provider with
 * `oidcDiscoveryProvider: true`), building what is missing first: all of them when the cache
 * has none (or ones that report another version), else only the missing ones. Concurrent
 * callers in other processes wait on a lock directory rather than building twice.
 */
export async function ensureSpireBinaries(
  opts: { version?: string; oidcDiscoveryProvider?: boolean; log?: (line: string) => void } = {},
): Promise<SpireBinaries> {
  const version = opts.version ?? SPIRE_VERSION;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const names = ['spire-server', 'spire-agent', ...(opts.oidcDiscoveryProvider === true ? ['oidc-discovery-provider'] : [])];
  const override = process.env['SPIRE_BIN_DIR'];
  if (override !== undefined && override !== '') {
    for (const name of names) if (!existsSync(join(override, name))) throw new Error(`SPIRE_BIN_DIR: ${join(override, name)} is missing`);
    const agent = join(override, 'spire-agent');
    return { ...paths(override, names), version: (await binaryVersion(agent)) ?? 'unknown', dir: override, built: false };
  }

  const dir = spireCacheDir(version);
  const binDir = join(dir, 'bin');
  const agent = join(binDir, 'spire-agent');
  /** The binaries still to build (none when every one is there and spire-agent reports `version`), and what it reported. */
  const inspect = async (): Promise<{ todo: string[]; reported?: string }> => {
    if (!existsSync(agent)) return { todo: names };
    const reported = await binaryVersion(agent);
    if (reported === undefined || !reported.startsWith(version)) return { todo: names };
    return { todo: names.filter((name) => !existsSync(join(binDir, name))), reported };
  };
  const reuse = async (): Promise<SpireBinaries | undefined> => {
    const { todo, reported } = await inspect();
    return todo.length > 0 ? undefined : { ...paths(binDir, names), version: reported ?? version, dir, built: false };
  };
  const cached = await reuse();
  if (cached !== undefined) return cached;

  mkdirSync(dir, { recursive: true });
  const release = await acquireBuildLock(dir, log, async () => (await reuse()) !== undefined);
  if (release === undefined) return (await reuse()) as SpireBinaries;
  try {
    const { todo, reported } = await inspect();
    if (todo.length === 0) return { ...paths(binDir, names), version: reported ?? version, dir, built: false };
    const go = process.env['GO'] ?? 'go';
    const env = { ...process.env, GOFLAGS: '-mod=mod' };
    const logFd = openSync(join(dir, 'build.log'), 'w');
    const started = performance.now();
    log(`spire-build: building ${todo.join(', ')} v${version} in ${dir} (cold: 6–20 minutes on 2 cores; log: ${join(dir, 'build.log')})`);
    try {
      if (!existsSync(join(dir, 'go.mod'))) await run(go, ['mod', 'init', 'x'], dir, logFd, env);
      for (const name of todo) await run(go, ['get', '-tool', `${PACKAGES[name]}@v${version}`], dir, logFd, env);
      // Into a fresh directory, then renamed: a half-written binary is never reused.
      const tmp = join(dir, `bin.tmp-${process.pid}`);
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      await run(go, ['build', '-o', `${tmp}/`, ...todo.map((name) => PACKAGES[name] as string)], dir, logFd, env);
      mkdirSync(binDir, { recursive: true });
      for (const b of todo) renameSync(join(tmp, b), join(binDir, b));
      rmSync(tmp, { recursive: true, force: true });
    } finally {
      closeSync(logFd);
    }
    const buildMs = performance.now() - started;
    const got = await reuse();
    if (got === undefined) throw new Error(`spire-build: built ${todo.join(', ')} in ${binDir}, but ${agent} -version does not start with ${version}`);
    log(`spire-build: built in ${(buildMs / 1000).toFixed(0)} s`);
    return { ...got, built: true, buildMs };
  } finally {
    release();
  }
}

/**
 * Takes the build lock of `dir` (a directory holding the owner's pid; a lock whose process is
 * gone is stale and taken over). While another process holds it, polls `done` every 5 s and
 * returns undefined once that says the work is done; else returns the release function.
 */
async function acquireBuildLock(dir: string, log: (line: string) => void, done: () => Promise<boolean>): Promise<(() => void) | undefined> {
  const lock = join(dir, '.build-lock');
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return () => rmSync(lock, { recursive: true, force: true });
    } catch {
      const pid = Number(readFileSync(join(lock, 'pid'), { encoding: 'utf8', flag: 'a+' }) || NaN);
      if (Number.isFinite(pid) && !existsSync(`/proc/${pid}`)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      log(`spire-build: waiting for the build (or download) in progress in ${dir}`);
      await new Promise((r) => setTimeout(r, 5_000));
      if (await done()) return undefined;
    }
  }
}

/**
 * Downloads the Go modules the SPIRE build needs (`go get -tool`, network-bound, little CPU)
 * without building, so CI can fetch them while other tests run; a later ensureSpireBinaries()
 * then only compiles. Does nothing when the binaries are cached or another process holds the
 * build lock. Resolves with the time it took in ms (0 when it did nothing).
 */
export async function downloadSpireModules(opts: { version?: string; log?: (line: string) => void } = {}): Promise<number> {
  const version = opts.version ?? SPIRE_VERSION;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (process.env['SPIRE_BIN_DIR']) return 0;
  const dir = spireCacheDir(version);
  const names = Object.keys(PACKAGES);
  if (names.every((name) => existsSync(join(dir, 'bin', name)))) return 0;
  mkdirSync(dir, { recursive: true });
  const release = await acquireBuildLock(dir, log, async () => true);
  if (release === undefined) return 0;
  const started = performance.now();
  const go = process.env['GO'] ?? 'go';
  const env = { ...process.env, GOFLAGS: '-mod=mod' };
  const logFd = openSync(join(dir, 'download.log'), 'w');
  try {
    if (!existsSync(join(dir, 'go.mod'))) await run(go, ['mod', 'init', 'x'], dir, logFd, env);
    for (const name of names) await run(go, ['get', '-tool', `${PACKAGES[name]}@v${version}`], dir, logFd, env);
  } finally {
    closeSync(logFd);
    release();
  }
  const ms = performance.now() - started;
  log(`spire-build: downloaded the modules of ${names.join(', ')} v${version} in ${(ms / 1000).toFixed(0)} s`);
  return ms;
}
