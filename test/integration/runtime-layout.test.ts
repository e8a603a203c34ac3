/**
 * The image's runtime layout, rebuilt without a container engine and started from a clean
 * directory. The Dockerfile itself is the script: its stages are replayed in temp "root file
 * systems" (WORKDIR and COPY exactly as written; RUN lines are matched and executed:
 * `npm run build` for real, `npm ci --omit=dev …` for real with --prefer-offline, and the
 * build stage's full `npm ci` stood in for by the repository's installed dev toolchain, which
 * comes from the same lockfile). Then:
 *  - the layout holds only what ships (no sources, no dev packages);
 *  - the DaemonSet's prepare-socket-dir script (taken from the manifest) hands a root-owned
 *    0755 socket directory to the agent UID with CAP_CHOWN only;
 *  - the agent starts from the layout with the manifest's agent.json (cluster-specific parts
 *    replaced: join_token instead of k8s_psat, unix instead of the k8s attestor, loopback
 *    addresses), as the manifest's UID with no capabilities at all when this runs as root,
 *    attests a process of another user (root) and serves it an X509-SVID, and answers the
 *    DaemonSet's probe paths and metrics port;
 *  - its idle memory fits the DaemonSet's limit, and SIGTERM ends it with 0.
 * KEEP_LAYOUT=1 keeps the temp directory for inspection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { NODE, REPO, freePort, readBundlePem, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { containerPath, copyArgs, execForm, finalStage, lastOf, readDockerfile, readDockerignore, type Stage } from '../support/dockerfile.ts';

const execFileAsync = promisify(execFile);
const STAGES = readDockerfile();
const FINAL = finalStage(STAGES);
const ignored = readDockerignore();

type Obj = Record<string, unknown>;
const daemonSet = parseYaml(readFileSync(join(REPO, 'manifests/agent/daemonset.yaml'), 'utf8')) as Obj;
const template = (daemonSet['spec'] as Obj)['template'] as Obj;
const containersOf = (key: string): Obj[] => ((template['spec'] as Obj)[key] as Obj[]) ?? [];
const AGENT_CONTAINER = containersOf('containers').find((c) => c['name'] === 'spiffe-agent') as Obj;
const INIT_CONTAINER = containersOf('initContainers').find((c) => c['name'] === 'prepare-socket-dir') as Obj;
const agentConfigMap = parseAllDocuments(readFileSync(join(REPO, 'manifests/agent/configmap.yaml'), 'utf8'))
  .map((d) => d.toJS() as Obj)
  .find((d) => d['kind'] === 'ConfigMap') as Obj;

const IS_ROOT = process.getuid?.() === 0;
const HAS_SETPRIV = spawnSync('setpriv', ['--version']).status === 0;
/** Run the agent as the manifest's UID with an empty capability set (needs root and setpriv). */
const DROP_PRIVILEGES = IS_ROOT && HAS_SETPRIV;
const AGENT_UID = DROP_PRIVILEGES ? Number((AGENT_CONTAINER['securityContext'] as Obj)['runAsUser']) : (process.getuid?.() ?? 0);
const AGENT_GID = DROP_PRIVILEGES ? Number((AGENT_CONTAINER['securityContext'] as Obj)['runAsGroup']) : (process.getgid?.() ?? 0);
const TD = 'example.org';
const WORKLOAD_ID = `spiffe://${TD}/layout-test`;

let root: string;
/** Where each stage's file system lives: stage index → directory. */
const stageRoots = new Map<number, string>();
let finalRoot: string;
let workdir: string;
let server: ServerHandle | undefined;
let agent: ChildProcess | undefined;
let agentLog = '';
let socketPath: string;

/** A container path inside a stage's root. */
const inRoot = (stageRoot: string, p: string): string => join(stageRoot, p);

async function run(cmd: string, args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync(cmd, args, { cwd, timeout: 150_000, maxBuffer: 32 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/** Copies a build-context path, leaving out what .dockerignore excludes. */
async function copyFromContext(source: string, target: string): Promise<void> {
  await cp(join(REPO, source), target, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (s) => !ignored(relative(REPO, s).split('\\').join('/')),
  });
}

/** Replays one stage of the Dockerfile into its own root directory. */
async function replayStage(stage: Stage, index: number): Promise<void> {
  const stageRoot = join(root, `stage-${index}-${stage.name ?? 'final'}`);
  stageRoots.set(index, stageRoot);
  await mkdir(stageRoot, { recursive: true });
  let cwd = '/';
  for (const instruction of stage.instructions) {
    switch (instruction.keyword) {
      case 'WORKDIR':
        cwd = containerPath(cwd, instruction.args);
        await mkdir(inRoot(stageRoot, cwd), { recursive: true });
        break;
      case 'COPY': {
        const { from, sources, dest } = copyArgs(instruction);
        const destPath = inRoot(stageRoot, containerPath(cwd, dest));
        const intoDir = dest.endsWith('/') || sources.length > 1;
        for (const source of sources) {
          let sourcePath: string;
          if (from === undefined) sourcePath = join(REPO, source);
          else {
            const fromIndex = STAGES.findIndex((s) => s.name === from);
            const fromRoot = stageRoots.get(fromIndex);
            if (fromRoot === undefined) throw new Error(`COPY --from=${from}: no earlier stage of that name`);
            sourcePath = inRoot(fromRoot, source);
          }
          const isDir = statSync(sourcePath).isDirectory();
          const target = isDir || !intoDir ? destPath : join(destPath, basename(source));
          await mkdir(isDir ? target : dirname(target), { recursive: true });
          if (from === undefined) await copyFromContext(source, target);
          else await cp(sourcePath, target, { recursive: true, verbatimSymlinks: true });
        }
        break;
      }
      case 'RUN': {
        const dir = inRoot(stageRoot, cwd);
        const command = instruction.args;
        if (command === 'npm ci --no-audit --no-fund') {
          // The full dev install: the repository's node_modules, installed from the same lockfile.
          await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
        } else if (command === 'npm run build') {
          await run('npm', ['run', 'build'], dir);
        } else if (/^npm ci .*--omit=dev/.test(command) && !command.includes('&&')) {
          await run('npm', [...command.split(/\s+/).slice(1), '--prefer-offline'], dir);
        } else {
          throw new Error(`Dockerfile line ${instruction.line}: this test does not know how to replay RUN ${command}; teach it`);
        }
        break;
      }
      case 'ARG':
      case 'LABEL':
      case 'ENV':
      case 'EXPOSE':
      case 'USER':
      case 'ENTRYPOINT':
      case 'CMD':
        break;
      default:
        throw new Error(`Dockerfile line ${instruction.line}: unexpected ${instruction.keyword}`);
    }
  }
}

function waitForLog(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      const m = pattern.exec(agentLog);
      if (m !== null) return resolve(m);
      if (agent?.exitCode !== null && agent?.exitCode !== undefined) return reject(new Error(`agent exited with ${agent.exitCode}:\n${agentLog}`));
      if (Date.now() > deadline) return reject(new Error(`agent log did not match ${pattern} in ${timeoutMs} ms:\n${agentLog.slice(-4000)}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

/** The final stage's ENTRYPOINT or CMD, exec form. */
function imageCommand(keyword: 'ENTRYPOINT' | 'CMD'): string[] {
  const found = lastOf(FINAL, keyword);
  if (found === undefined) throw new Error(`the Dockerfile's final stage has no ${keyword}`);
  return execForm(found);
}

/** The agent's command line, as the image's ENTRYPOINT + CMD, in the rebuilt root. */
function agentCommand(configPath: string): { cmd: string; args: string[] } {
  const [, script] = imageCommand('ENTRYPOINT') as [string, string];
  const cmdArgs = imageCommand('CMD').map((a) => (a === '/run/spire/config/agent.json' ? configPath : a));
  const node = [NODE, inRoot(finalRoot, script), ...cmdArgs];
  if (!DROP_PRIVILEGES) return { cmd: node[0] as string, args: node.slice(1) };
  return {
    cmd: 'setpriv',
    args: [`--reuid=${AGENT_UID}`, `--regid=${AGENT_GID}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', ...node],
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sna-layout-'));
  await chmod(root, 0o755); // the agent UID must reach the layout
  for (const [index, stage] of STAGES.entries()) await replayStage(stage, index);
  finalRoot = stageRoots.get(STAGES.length - 1) as string;
  workdir = lastOf(FINAL, 'WORKDIR')?.args as string;
}, 240_000);

afterAll(async () => {
  if (agent !== undefined && agent.exitCode === null) agent.kill('SIGKILL');
  await server?.cleanup();
  if (root !== undefined && process.env['KEEP_LAYOUT'] === undefined) await rm(root, { recursive: true, force: true });
});

describe('runtime layout (the Dockerfile replayed without a container engine)', () => {
  it('holds compiled JavaScript, protos, bin, package.json and production dependencies only', async () => {
    const app = inRoot(finalRoot, workdir);
    expect((await readdir(app)).sort()).toEqual(['bin', 'dist', 'node_modules', 'package.json', 'proto']);
    expect(existsSync(join(app, 'dist/agent/cli/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/server/cli/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/gen/index.js'))).toBe(true);
    // Every package the lockfile marks dev-only is absent; every production one is present.
    const lock = JSON.parse(await readFile(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean; os?: string[]; cpu?: string[] }> };
    const present: string[] = [];
    const missing: string[] = [];
    for (const [path, meta] of Object.entries(lock.packages)) {
      if (!path.startsWith('node_modules/') || meta.optional === true) continue;
      const exists = existsSync(join(app, path));
      if (meta.dev === true && exists) present.push(path);
      if (meta.dev !== true && !exists) missing.push(path);
    }
    expect(present, 'dev packages in the runtime layout').toEqual([]);
    expect(missing, 'production packages missing from the runtime layout').toEqual([]);
    for (const devOnly of ['typescript', 'vitest', 'node', 'kubernetes-models']) expect(existsSync(join(app, 'node_modules', devOnly)), devOnly).toBe(false);
  });

  it('the DaemonSet init step hands a root-owned 0755 socket directory to the agent UID (CAP_CHOWN only)', async () => {
    const [dirInContainer] = INIT_CONTAINER['args'] as string[];
    const command = INIT_CONTAINER['command'] as string[];
    expect(command.slice(0, 2)).toEqual(['/nodejs/bin/node', '-e']);
    const socketDir = inRoot(finalRoot, dirInContainer as string);
    // What the kubelet's DirectoryOrCreate leaves: root:root 0755 (when we are root).
    await mkdir(socketDir, { recursive: true, mode: 0o755 });
    await chmod(socketDir, 0o755);
    const node = [NODE, '-e', command[2] as string, socketDir, String(AGENT_UID), String(AGENT_GID)];
    const [cmd, ...args] = IS_ROOT && HAS_SETPRIV ? ['setpriv', '--inh-caps=-all,+chown', '--bounding-set=-all,+chown', '--no-new-privs', '--', ...node] : node;
    await run(cmd as string, args, finalRoot);
    const st = await stat(socketDir);
    expect({ uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8) }).toEqual({ uid: AGENT_UID, gid: AGENT_GID, mode: '755' });
  });

  it('starts the agent from the layout with the manifest config and serves an SVID to a process of another user', async () => {
    server = await startServerProcess({ trustDomain: TD });
    const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;

    // The manifest's agent.json, with only what needs a cluster replaced.
    const config = JSON.parse((agentConfigMap['data'] as Obj)['agent.json'] as string) as Obj & { agent: Obj; plugins: Obj; health_checks: Obj; telemetry: Obj[] };
    const original = { ...config.agent };
    config.agent['server_address'] = '127.0.0.1';
    config.agent['server_port'] = String(server.port);
    config.agent['trust_domain'] = TD;
    config.agent['join_token'] = token;
    config.agent['experimental'] = { sync_interval: '500ms' };
    for (const key of ['socket_path', 'data_dir', 'trust_bundle_path']) config.agent[key] = inRoot(finalRoot, original[key] as string);
    config.plugins['NodeAttestor'] = { join_token: { plugin_data: {} } };
    config.plugins['WorkloadAttestor'] = { unix: { plugin_data: {} } };
    config.health_checks['bind_address'] = '127.0.0.1';
    config.health_checks['bind_port'] = String(await freePort());
    const prometheus = ((config.telemetry[0] as Obj)['Prometheus'] as Obj[])[0] as Obj;
    prometheus['host'] = '127.0.0.1';
    prometheus['port'] = await freePort();
    socketPath = config.agent['socket_path'] as string;

    const configPath = inRoot(finalRoot, '/run/spire/config/agent.json');
    await mkdir(dirname(configPath), { recursive: true });
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const bundlePath = config.agent['trust_bundle_path'] as string;
    await mkdir(dirname(bundlePath), { recursive: true });
    await writeFile(bundlePath, await readBundlePem(server));
    // data_dir: the emptyDir, writable by the agent's UID only.
    const dataDir = config.agent['data_dir'] as string;
    await mkdir(dirname(dataDir), { recursive: true });
    await mkdir(dataDir, { mode: 0o700 });
    if (IS_ROOT) await chown(dataDir, AGENT_UID, AGENT_GID);

    const { cmd, args } = agentCommand(configPath);
    // The container's environment: the image's ENV and the DaemonSet's, nothing of this shell.
    const env = { PATH: '/usr/bin:/bin', NODE_ENV: 'production', MY_NODE_NAME: 'layout-test-node' };
    agent = spawn(cmd, args, { cwd: inRoot(finalRoot, workdir), env, stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stdout?.on('data', (d: Buffer) => (agentLog += d.toString()));
    agent.stderr?.on('data', (d: Buffer) => (agentLog += d.toString()));
    await waitForLog(/"msg":"workload API listening"/, 30_000);
    const agentId = (await waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/, 30_000))[1] as string;

    const created = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', WORKLOAD_ID, '-selector', `unix:uid:${process.getuid?.() ?? 0}`);
    expect(created.stderr).toBe('');

    // A workload: this test's user (root when it can drop the agent's privileges), using the
    // layout's own CLI.
    const cli = [inRoot(finalRoot, join(workdir, 'bin/spiffe-agent.js')), 'api', 'fetch', 'x509', '-socketPath', socketPath];
    const deadline = Date.now() + 30_000;
    let last = '';
    for (;;) {
      const res = spawnSync(NODE, cli, { cwd: inRoot(finalRoot, workdir), encoding: 'utf8', timeout: 15_000 });
      last = `${res.status} ${res.stdout} ${res.stderr}`;
      if (res.status === 0 && res.stdout.includes(WORKLOAD_ID)) break;
      if (Date.now() > deadline) throw new Error(`no SVID for ${WORKLOAD_ID}: ${last}\nagent log:\n${agentLog.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(last).toContain(`SPIFFE ID:`);

    // The DaemonSet's probes (the manifest's live_path/ready_path) and its metrics port answer.
    const health = `http://127.0.0.1:${String(config.health_checks['bind_port'])}`;
    for (const path of [config.health_checks['live_path'], config.health_checks['ready_path']] as string[]) {
      let status = 0;
      for (const until = Date.now() + 15_000; status !== 200 && Date.now() < until; ) {
        status = await fetch(`${health}${path}`).then((r) => r.status, () => 0);
        if (status !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(status, `GET ${path}`).toBe(200);
    }
    const metrics = await fetch(`http://127.0.0.1:${String(prometheus['port'])}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^# (HELP|TYPE) /m);
  }, 120_000);

  it.runIf(DROP_PRIVILEGES)('the agent ran as the manifest UID with no capabilities at all', async () => {
    const status = await readFile(`/proc/${agent?.pid}/status`, 'utf8');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
    expect(field('Uid').split(/\s+/)).toEqual([String(AGENT_UID), String(AGENT_UID), String(AGENT_UID), String(AGENT_UID)]);
    for (const caps of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(field(caps), caps).toBe('0000000000000000');
    expect(field('NoNewPrivs')).toBe('1');
    const sock = await stat(socketPath);
    expect(sock.uid).toBe(AGENT_UID);
    expect((sock.mode & 0o777).toString(8)).toBe('777');
  });

  it('an idle agent fits the DaemonSet memory limit with room to spare', async () => {
    const status = await readFile(`/proc/${agent?.pid}/status`, 'utf8');
    const rssBytes = Number(/^VmRSS:\s*(\d+) kB$/m.exec(status)?.[1]) * 1024;
    const limit = String(((AGENT_CONTAINER['resources'] as Obj)['limits'] as Obj)['memory']);
    const limitBytes = Number(/^(\d+)Mi$/.exec(limit)?.[1]) * 1024 * 1024;
    console.log(`runtime-layout: idle agent RSS ${(rssBytes / 2 ** 20).toFixed(1)} MiB, DaemonSet limit ${limit}`);
    expect(rssBytes).toBeGreaterThan(0);
    expect(rssBytes).toBeLessThan(limitBytes * 0.75);
  });

  it('SIGTERM ends the agent with 0 and removes its socket', async () => {
    const proc = agent as ChildProcess;
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    expect(code, agentLog.slice(-2000)).toBe(0);
    expect(existsSync(socketPath)).toBe(false);
  }, 20_000);
});
