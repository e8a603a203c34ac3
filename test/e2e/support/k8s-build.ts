/**
 * etcd and Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
 * kubectl), built from the Go module proxy into a cache directory outside the repository, for
 * the real-node e2e suite. Same scheme as bench/support/spire-build.ts:
 *
 *   <cache>/spiffe-node-agent/k8s-v1.34.4/
 *     k8s/go.mod, go.sum     a throwaway module: `go get -tool k8s.io/kubernetes/cmd/…@v1.34.4`,
 *                            one `replace` per k8s.io staging module (they are required at v0.0.0)
 *     etcd/go.mod, go.sum    `go get -tool go.etcd.io/etcd/server/v3@v3.6.4`
 *     bin/                   the six binaries and `.complete`, written only after all built
 *     build.log              the last build's output
 *
 * <cache> is $XDG_CACHE_HOME, else ~/.cache. Cold: 5–8 minutes on 2 cores (more under load);
 * with Go's build cache warm the binaries relink in seconds; with `.complete` present nothing
 * runs at all. K8S_BIN_DIR=<dir> uses binaries from elsewhere instead.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const K8S_VERSION = 'v1.34.4';
/** What k8s.io/kubernetes v1.34.4's go.mod pins. */
export const ETCD_VERSION = 'v3.6.4';
export const K8S_COMMANDS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kubectl'] as const;
const ALL = [...K8S_COMMANDS, 'etcd'] as const;
const MARKER = '.complete';

export interface K8sBinaries {
  readonly dir: string;
  readonly built: boolean;
  readonly buildMs?: number;
}

export function k8sCacheDir(version = K8S_VERSION): string {
  const base = process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(base, 'spiffe-node-agent', `k8s-${version}`);
}

function run(cmd: string, args: string[], cwd: string, logFd: number, env: NodeJS.ProcessEnv): Promise<string> {
  writeFileSync(logFd, `$ (cd ${cwd}) ${cmd} ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', logFd] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      writeFileSync(logFd, d);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? code}) in ${cwd}`))));
  });
}

/** `-X` flags so the binaries report the version (the kubelet checks it against the apiserver's). */
function versionLdflags(version: string): string {
  const minor = version.split('.')[1] as string;
  const flags = ['-s', '-w'];
  for (const p of ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version']) {
    flags.push(`-X ${p}.gitVersion=${version}`, `-X ${p}.gitMajor=1`, `-X ${p}.gitMinor=${minor}`, `-X ${p}.gitTreeState=clean`);
    flags.push(`-X ${p}.gitCommit=0000000000000000000000000000000000000000`, `-X ${p}.buildDate=1970-01-01T00:00:00Z`);
  }
  return flags.join(' ');
}

/** Returns the directory holding the six binaries, building them first when needed. */
export async function ensureK8sBinaries(opts: { log?: (line: string) => void } = {}): Promise<K8sBinaries> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const override = process.env['K8S_BIN_DIR'];
  if (override) {
    for (const b of ALL) if (!existsSync(join(override, b))) throw new Error(`K8S_BIN_DIR: ${join(override, b)} is missing`);
    return { dir: override, built: false };
  }
  const root = k8sCacheDir();
  const binDir = join(root, 'bin');
  const want = JSON.stringify({ k8s: K8S_VERSION, etcd: ETCD_VERSION });
  const complete = (): boolean => {
    try {
      return readFileSync(join(binDir, MARKER), 'utf8') === want && ALL.every((b) => existsSync(join(binDir, b)));
    } catch {
      return false;
    }
  };
  if (complete()) return { dir: binDir, built: false };

  mkdirSync(root, { recursive: true });
  const lock = join(root, '.build-lock');
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      const pid = Number(readFileSync(join(lock, 'pid'), { encoding: 'utf8', flag: 'a+' }) || NaN);
      if (!Number.isFinite(pid) || !existsSync(`/proc/${pid}`)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      log(`k8s-build: waiting for the build in progress (pid ${pid}) in ${root}`);
      await new Promise((r) => setTimeout(r, 5_000));
      if (complete()) return { dir: binDir, built: false };
    }
  }
  try {
    if (complete()) return { dir: binDir, built: false };
    const go = process.env['GO'] ?? 'go';
    const env = { ...process.env, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' };
    const logFd = openSync(join(root, 'build.log'), 'w');
    const started = performance.now();
    log(`k8s-build: building etcd ${ETCD_VERSION} and Kubernetes ${K8S_VERSION} in ${root} (cold: 5–8 minutes on 2 cores; log: ${join(root, 'build.log')})`);
    try {
      const k8sMod = join(root, 'k8s');
      const etcdMod = join(root, 'etcd');
      mkdirSync(k8sMod, { recursive: true });
      mkdirSync(etcdMod, { recursive: true });
      if (!existsSync(join(k8sMod, 'go.sum'))) {
        rmSync(join(k8sMod, 'go.mod'), { force: true });
        await run(go, ['mod', 'init', 'x'], k8sMod, logFd, env);
        // What k8s.io/kubernetes itself declares.
        await run(go, ['mod', 'edit', '-go=1.24.0', '-godebug=default=go1.24'], k8sMod, logFd, env);
        // As a dependency, k8s.io/kubernetes needs each staging module (required at v0.0.0,
        // replaced by ./staging in its own repository) replaced by the published v0.X.Y.
        const info = JSON.parse(await run(go, ['mod', 'download', '-json', `k8s.io/kubernetes@${K8S_VERSION}`], k8sMod, logFd, env)) as { GoMod: string };
        const staging = `v0.${K8S_VERSION.slice('v1.'.length)}`;
        const block = /^replace \(\n([\s\S]*?)\n\)/m.exec(readFileSync(info.GoMod, 'utf8'))?.[1] ?? '';
        const mods = block.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((m) => m.startsWith('k8s.io/'));
        if (mods.length < 20) throw new Error(`k8s-build: found only ${mods.length} staging modules in ${info.GoMod}`);
        await run(go, ['mod', 'edit', ...mods.map((m) => `-replace=${m}=${m}@${staging}`)], k8sMod, logFd, env);
        await run(go, ['get', '-tool', ...K8S_COMMANDS.map((c) => `k8s.io/kubernetes/cmd/${c}@${K8S_VERSION}`)], k8sMod, logFd, env);
      }
      if (!existsSync(join(etcdMod, 'go.sum'))) {
        rmSync(join(etcdMod, 'go.mod'), { force: true });
        await run(go, ['mod', 'init', 'x'], etcdMod, logFd, env);
        await run(go, ['get', '-tool', `go.etcd.io/etcd/server/v3@${ETCD_VERSION}`], etcdMod, logFd, env);
      }
      // Into a fresh directory, then renamed: a half-written binary is never reused.
      const tmp = join(root, `bin.tmp-${process.pid}`);
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      await run(go, ['build', '-trimpath', '-ldflags', '-s -w', '-o', join(tmp, 'etcd'), 'go.etcd.io/etcd/server/v3'], etcdMod, logFd, env);
      await run(go, ['build', '-trimpath', '-tags=selinux,notest,grpcnotrace', '-ldflags', versionLdflags(K8S_VERSION), '-o', `${tmp}/`, ...K8S_COMMANDS.map((c) => `k8s.io/kubernetes/cmd/${c}`)], k8sMod, logFd, env);
      const version = (await run(join(tmp, 'kubelet'), ['--version'], tmp, logFd, env)).trim();
      if (version !== `Kubernetes ${K8S_VERSION}`) throw new Error(`k8s-build: kubelet --version says "${version}"`);
      rmSync(binDir, { recursive: true, force: true });
      renameSync(tmp, binDir);
      writeFileSync(join(binDir, MARKER), want);
    } finally {
      closeSync(logFd);
    }
    const buildMs = performance.now() - started;
    log(`k8s-build: built in ${(buildMs / 1000).toFixed(0)} s`);
    return { dir: binDir, built: true, buildMs };
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
