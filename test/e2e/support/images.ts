/**
 * Container images for the e2e suite, built without a container engine or a registry:
 * `docker save`-format tarballs (manifest.json, the config JSON, one layer.tar) written with
 * `tar` and imported with `ctr images import`.
 *
 *  - the product image: the Dockerfile replayed (its build and deps stages run for real in
 *    temp directories, the final stage's WORKDIR/COPY/ENV/USER/ENTRYPOINT/CMD taken as
 *    written) on top of a stand-in for the distroless Node 24 base: the Node 24 binary from
 *    node_modules at /nodejs/bin/node, the glibc libraries it and the native modules link
 *    against (Debian 12 here, like the base), /etc/passwd with nonroot 65532, /tmp 1777;
 *  - the workload image: the static go-spiffe program of test/e2e/workload (CGO off);
 *  - the csi.spiffe.io driver's two images, both static (CGO off) and running as root like
 *    the upstream images: spiffe-csi-driver v0.2.6 from the Go module proxy
 *    (test/e2e/csi-driver), and test/e2e/csi-registrar, the suite's stand-in for
 *    node-driver-registrar (not served by the proxy);
 *  - the pod sandbox image registry.k8s.io/pause:3.10: a tiny static Go program.
 */
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { containerPath, copyArgs, execForm, finalStage, lastOf, readDockerfile, readDockerignore, type Stage } from '../../support/dockerfile.ts';
import { REPO } from '../../support/server-process.ts';

const execFileAsync = promisify(execFile);

export const PRODUCT_IMAGE = 'spiffe-node-agent:0.1.0';
export const WORKLOAD_IMAGE = 'localhost/spiffe-e2e-workload:0.1.0';
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
/** What overlay/csi swaps the shipped driver images for (kustomize `images:`). */
export const CSI_DRIVER_IMAGE = 'localhost/spiffe-csi-driver:0.2.6';
export const CSI_REGISTRAR_IMAGE = 'localhost/spiffe-e2e-csi-registrar:0.1.0';

export interface ImageConfig {
  Env: string[];
  Entrypoint: string[] | null;
  Cmd: string[] | null;
  WorkingDir: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
}

async function run(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { cwd, env: env ?? process.env, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

const sha256File = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Writes a single-layer docker-archive tarball of `rootfs` (every file owned by root). */
export async function writeDockerArchive(ref: string, rootfs: string, config: ImageConfig, out: string): Promise<void> {
  const w = mkdtempSync(join(dirname(out), '.img-'));
  try {
    const tarFlags = ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner'];
    await run('tar', [...tarFlags, '-C', rootfs, '-cf', join(w, 'layer.tar'), '.'], w);
    const diff = sha256File(join(w, 'layer.tar'));
    mkdirSync(join(w, diff));
    renameSync(join(w, 'layer.tar'), join(w, diff, 'layer.tar'));
    const cfg = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: config,
      rootfs: { type: 'layers', diff_ids: [`sha256:${diff}`] },
    });
    const cfgDigest = createHash('sha256').update(cfg).digest('hex');
    writeFileSync(join(w, `${cfgDigest}.json`), cfg);
    writeFileSync(join(w, 'manifest.json'), JSON.stringify([{ Config: `${cfgDigest}.json`, RepoTags: [ref], Layers: [`${diff}/layer.tar`] }]));
    await run('tar', [...tarFlags, '-C', w, '-cf', `${out}.tmp`, 'manifest.json', `${cfgDigest}.json`, diff], w);
    renameSync(`${out}.tmp`, out);
  } finally {
    rmSync(w, { recursive: true, force: true });
  }
}

/** Copies `file` (following links) into `rootfs` at the same absolute path. */
function copyHostFile(file: string, rootfs: string): void {
  const target = join(rootfs, file);
  mkdirSync(dirname(target), { recursive: true });
  cpSync(realpathSync(file), target, { dereference: true });
}

/** The shared libraries `ldd` lists for each ELF file (absolute paths on this host). */
async function sharedLibraries(files: string[]): Promise<string[]> {
  const libs = new Set<string>();
  for (const f of files) {
    const out = await run('ldd', [f], dirname(f)).catch(() => '');
    for (const m of out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(m[1] as string);
  }
  return [...libs].sort();
}

function walk(dir: string, pick: (p: string) => boolean, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, pick, out);
    else if (e.isFile() && pick(p)) out.push(p);
  }
  return out;
}

/** The base every image here gets: /etc/passwd and /etc/group with root and nonroot, /tmp 1777. */
function baseRootfs(rootfs: string): void {
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n');
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n');
  for (const d of ['tmp', 'home/nonroot', 'root', 'proc', 'sys', 'dev']) mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
}

/** Replays the Dockerfile's stages; returns the final stage's root and its image config. */
async function replayDockerfile(work: string, context: string, log: (l: string) => void): Promise<{ finalRoot: string; config: ImageConfig }> {
  const stages = readDockerfile();
  const ignored = readDockerignore();
  const roots = new Map<string, string>();
  let finalRoot = '';
  let config: ImageConfig = { Env: [], Entrypoint: null, Cmd: null, WorkingDir: '/' };
  for (const [index, stage] of stages.entries()) {
    const isFinal = index === stages.length - 1;
    const root = join(work, `stage-${index}-${stage.name ?? 'final'}`);
    mkdirSync(root, { recursive: true });
    if (isFinal) await distrolessStandIn(root);
    const env: string[] = isFinal ? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'] : [];
    let cwd = '/';
    const t0 = Date.now();
    for (const ins of stage.instructions) {
      switch (ins.keyword) {
        case 'WORKDIR':
          cwd = containerPath(cwd, ins.args);
          mkdirSync(join(root, cwd), { recursive: true });
          break;
        case 'COPY': {
          const { from, sources, dest } = copyArgs(ins);
          const destPath = join(root, containerPath(cwd, dest));
          const intoDir = dest.endsWith('/') || sources.length > 1;
          for (const source of sources) {
            const fromRoot = from === undefined ? undefined : roots.get(from);
            if (from !== undefined && fromRoot === undefined) throw new Error(`Dockerfile line ${ins.line}: COPY --from=${from}: no earlier stage of that name`);
            const sourcePath = fromRoot === undefined ? join(context, source) : join(fromRoot, source);
            const isDir = statSync(sourcePath).isDirectory();
            const target = isDir || !intoDir ? destPath : join(destPath, basename(source));
            mkdirSync(isDir ? target : dirname(target), { recursive: true });
            cpSync(sourcePath, target, {
              recursive: true,
              verbatimSymlinks: true,
              filter: from === undefined ? (s) => !ignored(relative(context, s).split('\\').join('/')) : undefined,
            });
          }
          break;
        }
        case 'RUN': {
          const dir = join(root, cwd);
          if (ins.args === 'npm ci --no-audit --no-fund') {
            // The full dev install: the repository's node_modules, from the same lockfile.
            symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
          } else if (ins.args === 'npm run build') {
            await run('npm', ['run', 'build'], dir);
          } else if (/^npm ci .*--omit=dev/.test(ins.args) && !ins.args.includes('&&')) {
            await run('npm', [...ins.args.split(/\s+/).slice(1), '--prefer-offline'], dir);
          } else {
            throw new Error(`Dockerfile line ${ins.line}: the e2e image build does not know how to replay RUN ${ins.args}; teach test/e2e/support/images.ts`);
          }
          break;
        }
        case 'ENV': {
          const m = /^(\S+?)(?:=|\s+)(.*)$/.exec(ins.args);
          if (m === null) throw new Error(`Dockerfile line ${ins.line}: cannot parse ENV`);
          const key = m[1] as string;
          const i = env.findIndex((e) => e.startsWith(`${key}=`));
          if (i >= 0) env.splice(i, 1);
          env.push(`${key}=${m[2] as string}`);
          break;
        }
        case 'USER':
          if (isFinal) config.User = ins.args;
          break;
        case 'LABEL':
          if (isFinal) {
            config.Labels ??= {};
            for (const m of ins.args.matchAll(/(\S+?)="([^"]*)"/g)) config.Labels[m[1] as string] = (m[2] as string).replace('${VERSION}', '0.1.0');
          }
          break;
        case 'EXPOSE':
          if (isFinal) {
            config.ExposedPorts ??= {};
            for (const p of ins.args.split(/\s+/)) config.ExposedPorts[p.includes('/') ? p : `${p}/tcp`] = {};
          }
          break;
        case 'ENTRYPOINT':
        case 'CMD':
        case 'ARG':
          break;
        default:
          throw new Error(`Dockerfile line ${ins.line}: unexpected ${ins.keyword}`);
      }
    }
    if (stage.name !== undefined) roots.set(stage.name, root);
    log(`images: Dockerfile stage ${stage.name ?? 'final'} replayed (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    if (isFinal) {
      finalRoot = root;
      const ep = lastOf(stage, 'ENTRYPOINT');
      const cmd = lastOf(stage, 'CMD');
      config = { ...config, Env: env, Entrypoint: ep ? execForm(ep) : null, Cmd: cmd ? execForm(cmd) : null, WorkingDir: cwd };
    }
  }
  return { finalRoot, config };
}

/**
 * Stands in for gcr.io/distroless/nodejs24-debian12:nonroot: Node 24 at /nodejs/bin/node
 * and the libraries it links (the base is Debian 12, as is this host).
 */
async function distrolessStandIn(root: string): Promise<void> {
  baseRootfs(root);
  const nodeBin = realpathSync(join(REPO, 'node_modules/node/bin/node'));
  mkdirSync(join(root, 'nodejs/bin'), { recursive: true });
  cpSync(nodeBin, join(root, 'nodejs/bin/node'));
  for (const f of ['/etc/ssl/certs/ca-certificates.crt', '/etc/nsswitch.conf']) if (existsSync(f)) copyHostFile(f, root);
}

/** The native modules of the production node_modules need their libraries too. */
async function addLibraries(root: string): Promise<void> {
  const elves = [join(root, 'nodejs/bin/node'), ...walk(join(root, 'opt'), (p) => p.endsWith('.node'))];
  for (const lib of await sharedLibraries(elves)) copyHostFile(lib, root);
}

export interface BuiltImages {
  readonly dir: string;
  readonly product: string;
  readonly workload: string;
  readonly pause: string;
  readonly csiDriver: string;
  readonly csiRegistrar: string;
  /** The product image's config as written (for the layout test). */
  readonly productConfig: ImageConfig;
}

/** A static build (CGO off) of package `pkg` of the module in `src`. */
async function goBuild(src: string, out: string, pkg = '.'): Promise<void> {
  await run(process.env['GO'] ?? 'go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', out, pkg], src, { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' });
}

/** An image holding one static binary at /<name>, run as the image's root user (no USER). */
async function staticImage(ref: string, work: string, name: string, build: (out: string) => Promise<void>, out: string): Promise<void> {
  const root = join(work, name);
  baseRootfs(root);
  await build(join(root, name));
  await writeDockerArchive(ref, root, { Env: ['PATH=/'], Entrypoint: [`/${name}`], Cmd: null, WorkingDir: '/' }, out);
}

/**
 * Builds the three images into `dir` (replacing earlier ones). The build context is the
 * working tree, or with `source: 'HEAD'` the last commit (`git archive`), which leaves other
 * people's uncommitted edits out.
 */
export async function buildImages(dir: string, log: (l: string) => void, source: 'worktree' | 'HEAD' = 'worktree'): Promise<BuiltImages> {
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'work-'));
  chmodSync(work, 0o755);
  try {
    const t0 = Date.now();
    let context = REPO;
    if (source === 'HEAD') {
      context = join(work, 'context');
      mkdirSync(context);
      await run('sh', ['-c', `git -C "${REPO}" archive HEAD | tar -x -C "${context}"`], REPO);
      log(`images: build context is HEAD (${(await run('git', ['rev-parse', '--short', 'HEAD'], REPO)).trim()})`);
    }
    const { finalRoot, config } = await replayDockerfile(work, context, log);
    await addLibraries(finalRoot);
    const product = join(dir, 'product.tar');
    await writeDockerArchive(PRODUCT_IMAGE, finalRoot, config, product);
    writeFileSync(join(dir, 'product.config.json'), JSON.stringify(config, null, 2));
    log(`images: ${PRODUCT_IMAGE} ${(statSync(product).size / 2 ** 20).toFixed(0)} MiB (${((Date.now() - t0) / 1000).toFixed(0)} s)`);

    const wl = join(work, 'workload');
    baseRootfs(wl);
    await goBuild(join(REPO, 'test/e2e/workload'), join(wl, 'e2e-workload'));
    const workload = join(dir, 'workload.tar');
    await writeDockerArchive(WORKLOAD_IMAGE, wl, { Env: ['PATH=/'], Entrypoint: ['/e2e-workload'], Cmd: ['watch'], WorkingDir: '/', User: '65532:65532' }, workload);

    const pauseSrc = join(work, 'pause-src');
    const pauseRoot = join(work, 'pause');
    mkdirSync(pauseSrc, { recursive: true });
    mkdirSync(pauseRoot, { recursive: true });
    writeFileSync(join(pauseSrc, 'go.mod'), 'module pause\n\ngo 1.24\n');
    writeFileSync(
      join(pauseSrc, 'main.go'),
      `// pause: the pod sandbox's process; sleeps until SIGINT/SIGTERM, reaping children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
`,
    );
    await goBuild(pauseSrc, join(pauseRoot, 'pause'));
    const pause = join(dir, 'pause.tar');
    await writeDockerArchive(PAUSE_IMAGE, pauseRoot, { Env: [], Entrypoint: ['/pause'], Cmd: null, WorkingDir: '/' }, pause);
    const csiDriver = join(dir, 'csi-driver.tar');
    await staticImage(CSI_DRIVER_IMAGE, work, 'spiffe-csi-driver', (o) => goBuild(join(REPO, 'test/e2e/csi-driver'), o, 'github.com/spiffe/spiffe-csi/cmd/spiffe-csi-driver'), csiDriver);
    const csiRegistrar = join(dir, 'csi-registrar.tar');
    await staticImage(CSI_REGISTRAR_IMAGE, work, 'csi-registrar', (o) => goBuild(join(REPO, 'test/e2e/csi-registrar'), o), csiRegistrar);
    log(`images: workload, pause and the CSI driver's two built (${((Date.now() - t0) / 1000).toFixed(0)} s in all)`);
    return { dir, product, workload, pause, csiDriver, csiRegistrar, productConfig: config };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export type { Stage };
export { finalStage, readDockerfile };
