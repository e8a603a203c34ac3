/**
 * Conformance with real SPIFFE client libraries (issue 5): go-spiffe v2 (test/interop/go) and
 * py-spiffe (test/interop/python) run against the real server(s) and the real agent, as
 * workloads of different uids, and print one "CHECK <name>: <fact>" line per fact they checked.
 *
 * Toolchains come from the machine: Go (`go` on PATH) and a Python 3 with `venv` that other
 * uids can run (not one under a private home such as pyenv's /root/.pyenv). The suite installs
 * the libraries itself: `go mod download` + `go build`, and `pip install -r requirements.txt`
 * into a virtualenv, both cached under node_modules/.cache/sna-interop/ keyed by a hash of
 * their inputs. In CI (CI=true) a missing toolchain fails the suite; elsewhere it skips with
 * a message saying what to install. Workloads run as other uids, so the suite needs root.
 *
 * Trust domains: example.org (server A + agent A, where the workloads run), b.org (server B +
 * agent B, federated both ways with A), c.org (an X.509-only federated bundle set into A, so
 * its JWKS is empty: `{"keys":[]}`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServerProcess, readBundlePem, NODE, REPO, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { makeTestCa } from '../support/ca-fixtures.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';
import { eventually } from '../support/eventually.ts';
import { buildGo, cacheRoot, detectGo, hashOf, mkdirShared, pruneSiblings, reachableByOthers, timed, type Toolchain } from '../support/interop-builds.ts';

const execFileAsync = promisify(execFile);

const IN_CI = process.env['CI'] === 'true';
const IS_ROOT = process.getuid?.() === 0;
const PY_DIR = join(REPO, 'test/interop/python');

const TD_A = 'example.org';
const TD_B = 'b.org';
const TD_C = 'c.org';
const id = (td: string, path: string): string => `spiffe://${td}${path}`;

/** One uid per workload identity (the unix attestor tells them apart by uid). */
const UID = {
  alpha: 47101, // go x509/jwt, mTLS server
  beta: 47102, // mTLS client the server authorizes
  gamma: 47103, // mTLS client the server refuses
  rotating: 47104, // short-TTL entry, go and python watch it rotate
  federated: 47105, // federates with b.org and c.org
  pyApp: 47106, // python x509/jwt
  endGo: 47107, // go stream whose entry gets deleted
  endPy: 47108, // python stream whose entry gets deleted
  multi: 47109, // two entries: the default SVID is the one with the lowest entry ID
  none: 47199, // no entry at all
  bClient: 47201, // on agent B: spiffe://b.org/fed-client, federates with example.org
} as const;

const ID = {
  alpha: id(TD_A, '/go/alpha'),
  beta: id(TD_A, '/go/beta'),
  gamma: id(TD_A, '/go/gamma'),
  rotating: id(TD_A, '/rotating'),
  federated: id(TD_A, '/federated'),
  pyApp: id(TD_A, '/py/app'),
  endGo: id(TD_A, '/go/stream-end'),
  endPy: id(TD_A, '/py/stream-end'),
  multiOne: id(TD_A, '/multi/one'),
  multiTwo: id(TD_A, '/multi/two'),
  bClient: id(TD_B, '/fed-client'),
} as const;

// ---------------------------------------------------------------------------------------------
// Toolchains and caches
// ---------------------------------------------------------------------------------------------

/** A Python 3 with venv whose interpreter and stdlib other uids can run. */
function detectPython(): Toolchain {
  const candidates = [process.env['SNA_INTEROP_PYTHON'], 'python3', '/usr/bin/python3'].filter((c): c is string => c !== undefined);
  const rejected: string[] = [];
  for (const bin of candidates) {
    try {
      const out = execFileSync(bin, ['-c', 'import sys, venv, ensurepip; print(sys.executable); print(sys.base_prefix); print("%d.%d.%d" % sys.version_info[:3])'], {
        encoding: 'utf8',
        timeout: 20_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const [exe, prefix, version] = out.trim().split('\n');
      if (exe === undefined || prefix === undefined || version === undefined) continue;
      const [major, minor] = version.split('.').map(Number);
      if (major !== 3 || (minor ?? 0) < 9) {
        rejected.push(`${bin}: Python ${version} (py-spiffe needs >= 3.9)`);
        continue;
      }
      if (!reachableByOthers(exe) || !reachableByOthers(prefix)) {
        rejected.push(`${bin}: ${realpathSync(exe)} is not reachable by other uids`);
        continue;
      }
      return { ok: true, reason: '', bin: realpathSync(exe), version };
    } catch (err) {
      rejected.push(`${bin}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return {
    ok: false,
    reason: `no usable Python 3 with venv (${rejected.join('; ')}): install python3 and python3-venv (e.g. apt-get install python3-venv), outside a private home directory, or set SNA_INTEROP_PYTHON`,
    bin: '',
    version: '',
  };
}

const GO = detectGo();
const PY = detectPython();

/** Creates the virtualenv once per (requirements.txt, interpreter); returns its python. */
async function buildVenv(): Promise<string> {
  if (!PY.ok) throw new Error(PY.reason);
  const requirements = readFileSync(join(PY_DIR, 'requirements.txt'));
  const dir = join(cacheRoot(), `py-${hashOf([PY.bin, PY.version, requirements])}`);
  const python = join(dir, 'venv', 'bin', 'python');
  if (existsSync(join(dir, 'complete'))) {
    console.log(`[interop] py-spiffe virtualenv cached: ${dir}/venv`);
    return python;
  }
  await mkdirShared(dir);
  const tmp = join(dir, `venv.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  const run = async (bin: string, args: string[]): Promise<void> => {
    try {
      await execFileAsync(bin, args, { timeout: 600_000, maxBuffer: 16 << 20, env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1' } });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
    }
  };
  await timed(`python -m venv (${PY.bin} ${PY.version})`, () => run(PY.bin, ['-m', 'venv', tmp]));
  // pip bakes the venv's path into its scripts, so install after moving the venv into place.
  await rm(join(dir, 'venv'), { recursive: true, force: true });
  await rename(tmp, join(dir, 'venv'));
  await timed('pip install -r requirements.txt', () => run(python, ['-m', 'pip', 'install', '--quiet', '--no-input', '-r', join(PY_DIR, 'requirements.txt')]));
  await execFileAsync('chmod', ['-R', 'a+rX', dir]);
  await writeFile(join(dir, 'complete'), new Date().toISOString());
  await pruneSiblings(dir);
  return python;
}

/** Starts a build now, without an unhandled rejection if nobody awaits it. */
function settle<T>(p: Promise<T>): Promise<{ value: T } | { error: Error }> {
  return p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error: error instanceof Error ? error : new Error(String(error)) }),
  );
}

async function unwrap<T>(p: Promise<{ value: T } | { error: Error }>): Promise<T> {
  const r = await p;
  if ('error' in r) throw r.error;
  return r.value;
}

// ---------------------------------------------------------------------------------------------
// Client processes
// ---------------------------------------------------------------------------------------------

interface ClientResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr, for assertion messages. */
  output: string;
}

interface ClientHandle {
  proc: ChildProcess;
  /** Resolves with the first stdout line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  done: Promise<ClientResult>;
}

const children = new Set<ChildProcess>();
let workDir = '';

function startClient(label: string, cmd: string, args: string[], opts: { uid: number; socket: string; timeoutMs?: number }): ClientHandle {
  const proc = spawn(cmd, args, {
    uid: opts.uid,
    gid: opts.uid,
    cwd: workDir,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: workDir, SPIFFE_ENDPOINT_SOCKET: `unix://${opts.socket}`, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let stdout = '';
  let stderr = '';
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    output += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    output += d.toString();
  });
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const timer = setTimeout(() => {
    output += `\n[test] killed after ${timeoutMs} ms\n`;
    proc.kill('SIGKILL');
  }, timeoutMs);
  const done = new Promise<ClientResult>((resolve) => {
    proc.once('error', (err) => {
      output += `\n[test] spawn failed: ${err.message}\n`;
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      // The facts each client checked, in the CI log.
      const lines = output.trimEnd().split('\n').map((l) => `  [${label} uid ${opts.uid}] ${l}`);
      console.log(`${lines.join('\n')}\n  [${label} uid ${opts.uid}] exit ${code}`);
      resolve({ code, stdout, stderr, output });
    });
  });
  const waitFor = async (pattern: RegExp, waitMs = 30_000): Promise<RegExpExecArray> => {
    const deadline = Date.now() + waitMs;
    let exited = false;
    void done.then(() => (exited = true));
    while (Date.now() < deadline) {
      const m = pattern.exec(stdout);
      if (m !== null) return m;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${label} (uid ${opts.uid}) never printed ${pattern}:\n${output}`);
  };
  return { proc, waitFor, done };
}

let goBin = '';
let python = '';
let pyScript = '';

function goClient(args: string[], opts: { uid: number; socket?: string; timeoutMs?: number }): ClientHandle {
  return startClient(`go ${args[0]}`, goBin, args, { socket: agentA.socketPath, ...opts });
}

function pyClient(args: string[], opts: { uid: number; socket?: string; timeoutMs?: number }): ClientHandle {
  return startClient(`py ${args[0]}`, python, [pyScript, ...args], { socket: agentA.socketPath, ...opts });
}

/** The CHECK names a client printed. */
function checks(res: ClientResult): string[] {
  return [...res.stdout.matchAll(/^CHECK ([\w-]+):/gm)].map((m) => m[1] as string);
}

function expectPassed(res: ClientResult, names: string[]): void {
  expect(res.code, res.output).toBe(0);
  expect(checks(res), res.output).toEqual(expect.arrayContaining(names));
}

/** Runs a client until it passes, at most `attempts` times (for eventually-consistent state). */
async function passesEventually(start: () => ClientHandle, attempts = 3): Promise<ClientResult> {
  let last: ClientResult | undefined;
  for (let i = 0; i < attempts; i++) {
    last = await start().done;
    if (last.code === 0) return last;
    await new Promise((r) => setTimeout(r, 1500));
  }
  return last as ClientResult;
}

// ---------------------------------------------------------------------------------------------
// Servers, agents, entries
// ---------------------------------------------------------------------------------------------

let serverA: ServerHandle;
let serverB: ServerHandle;
let agentA: AgentHandle;
let agentB: AgentHandle;
let agentAId = '';
let agentBId = '';
const entryIds: Record<string, string> = {};
let bRootFingerprints: string[] = [];
let bJwtKids: string[] = [];

const goBuild = IS_ROOT || IN_CI ? settle(buildGo(GO)) : settle(Promise.reject(new Error('not root')));
const pyBuild = IS_ROOT || IN_CI ? settle(buildVenv()) : settle(Promise.reject(new Error('not root')));

async function createEntry(server: ServerHandle, ...args: string[]): Promise<string> {
  const out = await server.cli('entry', 'create', ...args);
  if (out.code !== 0 || out.stderr !== '') throw new Error(`entry create ${args.join(' ')}: ${out.stderr}${out.stdout}`);
  return /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1] as string;
}

async function startAgentFor(server: ServerHandle): Promise<{ agent: AgentHandle; agentId: string }> {
  const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;
  const agent = await startAgentProcess({ server, joinToken: token });
  const agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
  return { agent, agentId };
}

/** Waits until `uid` gets exactly `ids` from `agent` (a raw grpc-js child as that uid). */
async function waitForIdentity(agent: AgentHandle, uid: number, ids: string[]): Promise<void> {
  await eventually(
    async () => {
      const proc = spawn(NODE, [join(REPO, 'test/support/workload-child.ts'), agent.socketPath, 'fetch'], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(proc);
      let out = '';
      proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((r) => proc.once('close', r));
      children.delete(proc);
      const got = out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { event: string; ids?: string[] })
        .find((e) => e.event === 'svids');
      if (got === undefined || JSON.stringify([...(got.ids ?? [])].sort()) !== JSON.stringify([...ids].sort())) {
        throw new Error(`uid ${uid} has ${JSON.stringify(got?.ids)} from the agent, want ${JSON.stringify(ids)}: ${out}`);
      }
    },
    30_000,
    300,
  );
}

const SKIP_ALL = !IN_CI && !IS_ROOT;
if (SKIP_ALL) console.warn('[interop] skipped: the client-library conformance suite runs workloads as other uids and needs root (CI runs it as root)');
if (!IN_CI && !GO.ok) console.warn(`[interop] go-spiffe checks skipped: ${GO.reason}`);
if (!IN_CI && !PY.ok) console.warn(`[interop] py-spiffe checks skipped: ${PY.reason}`);

describe.skipIf(SKIP_ALL)('real SPIFFE client libraries against the real agent', () => {
  beforeAll(async () => {
    if (!IS_ROOT) throw new Error('CI=true: this suite spawns workloads as other uids and must run as root');
    workDir = await mkdtemp(join(tmpdir(), 'sna-interop-'));
    await chmod(workDir, 0o755);
    pyScript = join(workDir, 'interop.py');
    await copyFile(join(PY_DIR, 'interop.py'), pyScript);
    await chmod(pyScript, 0o644);

    [serverA, serverB] = await Promise.all([startServerProcess({ trustDomain: TD_A }), startServerProcess({ trustDomain: TD_B })]);

    // Federation both ways: A gets B's bundle (X.509 + JWT), B gets A's; A also gets an
    // X.509-only bundle for c.org.
    const bundleFile = async (server: ServerHandle, name: string): Promise<string> => {
      const out = await server.cli('bundle', 'show', '-format', 'spiffe');
      if (out.code !== 0) throw new Error(`bundle show: ${out.stderr}`);
      const path = join(workDir, name);
      await writeFile(path, out.stdout);
      return path;
    };
    const bBundlePath = await bundleFile(serverB, 'b.org.bundle.json');
    const aBundlePath = await bundleFile(serverA, 'example.org.bundle.json');
    for (const [server, td, path] of [
      [serverA, TD_B, bBundlePath],
      [serverB, TD_A, aBundlePath],
    ] as const) {
      const out = await server.cli('bundle', 'set', '-id', `spiffe://${td}`, '-path', path, '-format', 'spiffe');
      if (out.code !== 0) throw new Error(`bundle set ${td}: ${out.stderr}${out.stdout}`);
    }
    const cRoot = await makeTestCa({ name: 'O=c.org, CN=c.org root', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
    const cPath = join(workDir, 'c.org.pem');
    await writeFile(cPath, cRoot.pem);
    const cSet = await serverA.cli('bundle', 'set', '-id', `spiffe://${TD_C}`, '-path', cPath);
    if (cSet.code !== 0) throw new Error(`bundle set c.org: ${cSet.stderr}`);

    bRootFingerprints = decodePemCertificates(await readBundlePem(serverB)).map((der) => new X509Certificate(der).fingerprint256.replaceAll(':', '').toLowerCase());
    const bJwks = JSON.parse(await readFile(bBundlePath, 'utf8')) as { keys: { use?: string; kid?: string }[] };
    bJwtKids = bJwks.keys.filter((k) => k.use === 'jwt-svid').map((k) => k.kid as string);

    [{ agent: agentA, agentId: agentAId }, { agent: agentB, agentId: agentBId }] = await Promise.all([startAgentFor(serverA), startAgentFor(serverB)]);

    const a = (name: keyof typeof ID & keyof typeof UID, ...extra: string[]): Promise<void> =>
      createEntry(serverA, '-parentID', agentAId, '-spiffeID', ID[name], '-selector', `unix:uid:${UID[name]}`, ...extra).then((e) => void (entryIds[name] = e));
    await Promise.all([
      a('alpha'),
      a('beta'),
      a('gamma'),
      a('rotating', '-x509SVIDTTL', '20'),
      a('federated', '-federatesWith', `spiffe://${TD_B}`, '-federatesWith', `spiffe://${TD_C}`),
      a('pyApp'),
      a('endGo'),
      a('endPy'),
      createEntry(serverA, '-parentID', agentAId, '-spiffeID', ID.multiOne, '-selector', `unix:uid:${UID.multi}`).then((e) => void (entryIds['multiOne'] = e)),
      createEntry(serverA, '-parentID', agentAId, '-spiffeID', ID.multiTwo, '-selector', `unix:uid:${UID.multi}`).then((e) => void (entryIds['multiTwo'] = e)),
      createEntry(serverB, '-parentID', agentBId, '-spiffeID', ID.bClient, '-selector', `unix:uid:${UID.bClient}`, '-federatesWith', `spiffe://${TD_A}`),
    ]);
    await Promise.all([
      ...(['alpha', 'beta', 'gamma', 'rotating', 'federated', 'pyApp', 'endGo', 'endPy'] as const).map((n) => waitForIdentity(agentA, UID[n], [ID[n]])),
      waitForIdentity(agentA, UID.multi, [ID.multiOne, ID.multiTwo]),
      waitForIdentity(agentB, UID.bClient, [ID.bClient]),
    ]);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all([agentA?.cleanup(), agentB?.cleanup()]);
    await Promise.all([serverA?.cleanup(), serverB?.cleanup()]);
    if (workDir !== '') await rm(workDir, { recursive: true, force: true });
  });

  describe.skipIf(!IN_CI && !GO.ok)(`go-spiffe (github.com/spiffe/go-spiffe/v2)`, () => {
    let watch: ClientHandle;

    beforeAll(async () => {
      goBin = await unwrap(goBuild);
      // The rotation takes a while (TTL 20 s): watch it while the other checks run.
      watch = goClient(['watch', '-id', ID.rotating, '-timeout', '45s'], { uid: UID.rotating, timeoutMs: 60_000 });
    }, 600_000);

    it('X509Source: default SVID ID, x509svid.Verify against the bundle, key matches, one-shot fetches', async () => {
      const res = await goClient(['x509', '-id', ID.alpha, '-absent-td', TD_B], { uid: UID.alpha }).done;
      expectPassed(res, ['x509-source', 'x509-verify', 'x509-key', 'x509-profile', 'x509-bundle', 'x509-no-federation', 'x509-context', 'x509-bundles', 'jwt-bundles', 'bundle-source', 'x509-oneshots']);
    });

    it('with two entries, the default SVID (svids[0]) is the one with the lowest entry ID', async () => {
      const [first, second] = [
        [entryIds['multiOne'] as string, ID.multiOne],
        [entryIds['multiTwo'] as string, ID.multiTwo],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1));
      const res = await goClient(['x509', '-id', first?.[1] as string, '-oneshots', '3'], { uid: UID.multi }).done;
      expectPassed(res, ['x509-source', 'x509-context']);
      expect(res.stdout).toContain(`SVIDs [${first?.[1]} ${second?.[1]}]`);
    });

    it('JWT-SVID for two audiences: jwtsvid.ParseAndValidate against a JWTSource, ValidateJWTSVID on the agent', async () => {
      const res = await goClient(['jwt', '-id', ID.alpha, '-aud', 'aud-one', '-aud', 'aud-two'], { uid: UID.alpha }).done;
      expectPassed(res, ['jwt-fetch', 'jwt-header', 'jwt-cache', 'jwt-bundle', 'jwt-parse-validate', 'jwt-validate-agent', 'jwt-validate-agent-wrong-aud', 'jwt-fetch-foreign-id']);
    });

    it('mTLS between workloads: the server authorizes only the expected client ID and refuses a third identity', async () => {
      const server = goClient(['mtls-server', '-id', ID.alpha, '-allow', ID.beta, '-expect', 'accept,refuse', '-timeout', '50s'], { uid: UID.alpha });
      const addr = (await server.waitFor(/^LISTENING (\S+)$/m))[1] as string;
      const ok = await goClient(['mtls-client', '-id', ID.beta, '-connect', addr, '-server-id', ID.alpha], { uid: UID.beta }).done;
      expectPassed(ok, ['mtls-client-server-id', 'mtls-client-accepted']);
      expect(ok.stdout).toContain(`server ${ID.alpha} answered "hello ${ID.beta}`);
      const refused = await goClient(['mtls-client', '-id', ID.gamma, '-connect', addr, '-server-id', ID.alpha, '-expect-refused'], { uid: UID.gamma }).done;
      expectPassed(refused, ['mtls-client-refused']);
      const srv = await server.done;
      expectPassed(srv, ['mtls-server', 'mtls-accept', 'mtls-refuse']);
      expect(srv.stdout).toContain(`authorized peer ${ID.beta}`);
      expect(srv.stdout).toContain(`refused peer ${ID.gamma}`);
    }, 60_000);

    it('federation: federated X.509 and JWT bundles, cross-trust-domain mTLS and JWT, an X.509-only bundle as {"keys":[]}', async () => {
      const token = await goClient(['jwt', '-id', ID.bClient, '-aud', ID.federated, '-print-token'], { uid: UID.bClient, socket: agentB.socketPath }).done;
      expectPassed(token, ['jwt-fetch', 'jwt-validate-agent']);
      const jwt = (/^TOKEN (\S+)$/m.exec(token.stdout) ?? [])[1] as string;
      const fed = await passesEventually(() =>
        goClient(
          ['federation', '-id', ID.federated, '-td', TD_B, '-roots', bRootFingerprints.join(','), '-kids', bJwtKids.join(','), '-token', jwt, '-token-id', ID.bClient, '-aud', ID.federated, '-x509-only-td', TD_C],
          { uid: UID.federated },
        ),
      );
      expectPassed(fed, ['federated-x509-bundle', 'federated-x509-bundles', 'federated-jwt-bundle', 'federated-x509-only', 'federated-jwt-parse-validate', 'federated-jwt-validate-agent']);

      // A workload of example.org (agent A) serves a workload of b.org (agent B).
      const server = goClient(['mtls-server', '-id', ID.federated, '-allow', ID.bClient, '-expect', 'accept', '-timeout', '40s'], { uid: UID.federated });
      const addr = (await server.waitFor(/^LISTENING (\S+)$/m))[1] as string;
      const client = await goClient(['mtls-client', '-id', ID.bClient, '-connect', addr, '-server-id', ID.federated], { uid: UID.bClient, socket: agentB.socketPath }).done;
      expectPassed(client, ['mtls-client-accepted']);
      expectPassed(await server.done, ['mtls-accept']);
    }, 90_000);

    it('calls without the security header (or with a bad one) get InvalidArgument, and X509Source stops at once', async () => {
      const res = await goClient(['noheader'], { uid: UID.alpha }).done;
      expectPassed(res, ['noheader', 'noheader-x509source']);
      expect(res.stdout.match(/^CHECK noheader:/gm)).toHaveLength(3);
    });

    it('serves calls whatever :authority the client sends: "localhost" (grpc-go) and the %-encoded socket path (gRPC C-core)', async () => {
      for (const value of ['localhost', encodeURIComponent(agentA.socketPath)]) {
        expectPassed(await goClient(['authority', '-id', ID.alpha, '-value', value], { uid: UID.alpha }).done, ['authority']);
      }
    });

    // KNOWN AGENT BUG (java-spiffe cannot connect at all): grpc-java, and so java-spiffe
    // 0.8.17 over grpc-netty-linux, sends the socket path itself as :authority
    // ("/run/spire/agent.sock"). Node's HTTP/2 layer (nghttp2) resets such streams with
    // PROTOCOL_ERROR before grpc-js sees them; SPIRE (grpc-go) serves them. This test mimics
    // that client with go-spiffe. Once the agent serves it, vitest reports this `it.fails` as
    // failed: then turn it into a plain `it`.
    it('serves calls whose :authority is the raw socket path, as grpc-java (java-spiffe) sends', async () => {
      expectPassed(await goClient(['authority', '-id', ID.alpha, '-value', agentA.socketPath], { uid: UID.alpha }).done, ['authority']);
    });

    it('a uid without an entry gets "no identity issued", and X509Source keeps retrying until its context ends', async () => {
      const res = await goClient(['noidentity', '-wait', '4s'], { uid: UID.none }).done;
      expectPassed(res, ['noidentity-x509', 'noidentity-jwt', 'noidentity-x509source']);
      expect(res.stdout).toContain('code = PermissionDenied desc = no identity issued');
    });

    it('a missing socket gives the library its own clear error', async () => {
      const res = await goClient(['nosocket'], { uid: UID.alpha, socket: join(workDir, 'missing', 'agent.sock') }).done;
      expectPassed(res, ['nosocket-unset', 'nosocket-missing', 'nosocket-x509source']);
    });

    it('WatchX509Context sees a short-lived SVID rotate before it expires', async () => {
      const res = await watch.done;
      expectPassed(res, ['watch-first', 'watch-rotation']);
    }, 60_000);
  });

  describe.skipIf(!IN_CI && !PY.ok)('py-spiffe (PyPI spiffe)', () => {
    let watch: ClientHandle;

    beforeAll(async () => {
      python = await unwrap(pyBuild);
      watch = pyClient(['watch', '--id', ID.rotating, '--timeout', '45'], { uid: UID.rotating, timeoutMs: 60_000 });
    }, 600_000);

    it('X509Source is ready with the expected ID; the chain verifies against the bundle; the key matches', async () => {
      const res = await pyClient(['x509', '--id', ID.pyApp], { uid: UID.pyApp }).done;
      expectPassed(res, ['x509-source', 'x509-verify', 'x509-key', 'x509-fetch-svids', 'x509-fetch-bundles', 'jwt-fetch-bundles']);
    });

    it('JwtSource fetch for two audiences, JwtSvid.parse_and_validate, and the agent validates it', async () => {
      const res = await pyClient(['jwt', '--id', ID.pyApp, '--aud', 'aud-one', '--aud', 'aud-two'], { uid: UID.pyApp }).done;
      expectPassed(res, ['jwt-fetch', 'jwt-bundle', 'jwt-parse-validate', 'jwt-parse-validate-wrong-aud', 'jwt-validate-agent', 'jwt-validate-agent-wrong-aud']);
    });

    it('federated bundles, including an X.509-only trust domain whose JWKS must parse', async () => {
      const res = await passesEventually(() => pyClient(['federation', '--id', ID.federated, '--td', TD_B, '--x509-only-td', TD_C], { uid: UID.federated }));
      expectPassed(res, ['federated-x509-bundle', 'federated-jwt-bundle', 'federated-x509-only']);
    }, 90_000);

    it('a uid without an entry gets "no identity issued", and X509Source keeps retrying until its timeout', async () => {
      const res = await pyClient(['noidentity', '--wait', '3'], { uid: UID.none }).done;
      expectPassed(res, ['noidentity-x509', 'noidentity-jwt', 'noidentity-x509source']);
      expect(res.stdout).toContain('no identity issued (StatusCode.PERMISSION_DENIED)');
    });

    it('a missing socket gives the library its own clear error', async () => {
      const res = await pyClient(['nosocket'], { uid: UID.alpha, socket: join(workDir, 'missing', 'agent.sock') }).done;
      expectPassed(res, ['nosocket-missing', 'nosocket-unset']);
    });

    it('an X509Source watch sees a short-lived SVID rotate before it expires', async () => {
      const res = await watch.done;
      expectPassed(res, ['watch-first', 'watch-rotation']);
    }, 60_000);
  });

  describe.skipIf(!IN_CI && !GO.ok && !PY.ok)('streams end with an error status, never OK', () => {
    /** `want` is a gRPC code name as go-spiffe prints it (PermissionDenied); py-spiffe prints PERMISSION_DENIED. */
    const clients = (want: string, uids: { go: number; py: number }): ClientHandle[] => [
      ...(goBin !== '' ? [goClient(['watch-end', '-want', want, '-timeout', '40s'], { uid: uids.go })] : []),
      ...(python !== '' ? [pyClient(['watch-end', '--want', want.replace(/(?<=[a-z])(?=[A-Z])/g, '_').toUpperCase(), '--timeout', '40'], { uid: uids.py })] : []),
    ];

    it('deleting the entries ends open streams with PermissionDenied', async () => {
      const open = clients('PermissionDenied', { go: UID.endGo, py: UID.endPy });
      expect(open.length, 'no client library available').toBeGreaterThan(0);
      await Promise.all(open.map((c) => c.waitFor(/^READY /m)));
      for (const name of ['endGo', 'endPy']) {
        const out = await serverA.cli('entry', 'delete', '-entryID', entryIds[name] as string);
        expect(out.code, out.stderr).toBe(0);
      }
      for (const res of await Promise.all(open.map((c) => c.done))) expectPassed(res, ['stream-end']);
    });

    it('stopping the agent ends open streams with Unavailable', async () => {
      const open = clients('Unavailable', { go: UID.alpha, py: UID.pyApp });
      expect(open.length, 'no client library available').toBeGreaterThan(0);
      await Promise.all(open.map((c) => c.waitFor(/^READY /m)));
      await agentA.stop();
      for (const res of await Promise.all(open.map((c) => c.done))) expectPassed(res, ['stream-end']);
    });
  });
});
