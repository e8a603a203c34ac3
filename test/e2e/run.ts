/**
 * The real-node e2e suite (`npm run test:e2e`): builds what it needs, starts a single-node
 * Kubernetes on this machine, runs the vitest suite in test/e2e against it, and always tears
 * it down (also on a failure, Ctrl-C, SIGTERM or SIGHUP).
 *
 *   node test/e2e/run.ts          everything
 *   node test/e2e/run.ts down     tear down what a killed run (or E2E_KEEP=1) left
 *
 * Needs root (containerd, the kubelet, /etc/hosts, sysctls), Go on PATH, apt for containerd
 * and runc when they are missing. Env: E2E_ROOT (work dir, default $TMPDIR/spiffe-node-agent-e2e:
 * pki, logs — kept after the run — images, run state), E2E_KEEP=1 (leave the cluster up;
 * KUBECONFIG=$E2E_ROOT/pki/admin.kubeconfig), E2E_SOURCE=HEAD (build the product image from the
 * last commit instead of the working tree), XDG_CACHE_HOME / K8S_BIN_DIR (see
 * support/k8s-build.ts), extra arguments are passed to vitest (e.g. `-t name`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from './support/cluster.ts';
import { buildImages } from './support/images.ts';
import { ensureK8sBinaries, k8sCacheDir } from './support/k8s-build.ts';
import { REPO } from '../support/server-process.ts';
import { ensureSpireBinaries } from '../../bench/support/spire-build.ts';

/** The hostPath the e2e server overlay's PersistentVolume points at (overlay/server/pv.yaml). */
export const SERVER_DATA_DIR = '/var/lib/spiffe-node-agent-e2e/server-data';

const t0 = Date.now();
const stamp = (): string => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
const log = (line: string): void => void process.stderr.write(`[e2e ${stamp()}] ${line}\n`);

const root = process.env['E2E_ROOT'] || join(tmpdir(), 'spiffe-node-agent-e2e');
const state = '/run/spiffe-node-agent-e2e';

function ensureHostPackages(): void {
  const missing = ['containerd', 'ctr', 'runc', 'iptables', 'openssl'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
  if (missing.length === 0) return;
  log(`installing containerd and runc from Debian (missing: ${missing.join(', ')})`);
  const apt = (args: string[]): void => {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${r.status})`);
  };
  apt(['update', '-qq']);
  apt(['install', '-y', '-qq', '--no-install-recommends', 'containerd', 'runc', 'iptables', 'openssl', 'ca-certificates']);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    log('needs root (containerd, kubelet, /etc/hosts, sysctls); not running');
    return 1;
  }
  const cluster = new Cluster({ root, state, bin: join(k8sCacheDir(), 'bin') }, log);
  if (process.argv[2] === 'down') {
    await cluster.down();
    log('down: done');
    return 0;
  }
  let vitest: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;
  const teardown = (): Promise<void> => {
    stopping ??= (async () => {
      const s = Date.now();
      try {
        await cluster.down();
      } catch (err) {
        log(`teardown failed: ${(err as Error).stack}`);
      }
      log(`teardown done (${((Date.now() - s) / 1000).toFixed(1)} s); logs kept in ${cluster.logs}`);
    })();
    return stopping;
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      log(`${sig}: stopping`);
      if (vitest?.exitCode === null) vitest.kill('SIGTERM');
      void teardown().then(() => process.exit(130));
    });
  }

  try {
    if (cluster.hasLeftovers()) {
      log(`a previous run left a cluster behind in ${root}: tearing it down first`);
      await cluster.down();
    }
    ensureHostPackages();
    // SPIRE's spire-server runs on the host for spire-k8s-psat.test.ts (it needs cgo for
    // sqlite3, so it is no image): the build npm run test:spire reuses.
    const [binsResult, imagesResult, spireResult] = await Promise.allSettled([
      ensureK8sBinaries({ log }).then((b) => (log(b.built ? `k8s binaries built in ${((b.buildMs ?? 0) / 1000).toFixed(0)} s` : `k8s binaries reused from ${b.dir}`), b)),
      buildImages(join(root, 'images'), log, process.env['E2E_SOURCE'] === 'HEAD' ? 'HEAD' : 'worktree'),
      ensureSpireBinaries({ log }).then((b) => (log(b.built ? `SPIRE ${b.version} built in ${((b.buildMs ?? 0) / 1000).toFixed(0)} s` : `SPIRE ${b.version} reused from ${b.dir}`), b)),
    ]);
    if (binsResult.status === 'rejected') throw binsResult.reason;
    if (imagesResult.status === 'rejected') throw imagesResult.reason;
    if (spireResult.status === 'rejected') throw spireResult.reason;
    const bins = binsResult.value;
    const images = imagesResult.value;
    const up = new Cluster({ root, state, bin: bins.dir }, log);
    const upStart = Date.now();
    await up.up([images.pause, images.product, images.workload, images.csiDriver, images.csiRegistrar]);
    mkdirSync(SERVER_DATA_DIR, { recursive: true });
    chownSync(SERVER_DATA_DIR, 65532, 65532);
    log(`cluster up in ${((Date.now() - upStart) / 1000).toFixed(1)} s`);
    if (stopping !== undefined) return 130;

    const code = await new Promise<number>((resolve) => {
      vitest = spawn(join(REPO, 'node_modules/.bin/vitest'), ['run', '--config', 'test/e2e/vitest.config.ts', ...process.argv.slice(2)], {
        cwd: REPO,
        stdio: 'inherit',
        env: {
          ...process.env,
          E2E_ROOT: root,
          E2E_KUBECONFIG: up.kubeconfig,
          E2E_BIN: bins.dir,
          E2E_CONTAINERD_SOCK: up.sock,
          E2E_IMAGES: images.dir,
          E2E_LOGS: up.logs,
          E2E_SPIRE_SERVER: spireResult.value.server,
        },
      });
      vitest.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
    });
    log(`vitest exited with ${code}`);
    if (process.env['E2E_KEEP'] === '1') {
      log(`E2E_KEEP=1: cluster left running; KUBECONFIG=${up.kubeconfig} ${join(bins.dir, 'kubectl')} …; then: node test/e2e/run.ts down`);
      return code;
    }
    return code;
  } catch (err) {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    return 1;
  } finally {
    if (process.env['E2E_KEEP'] !== '1') await teardown();
    log(`total ${stamp()}`);
  }
}

process.exitCode = await main();
