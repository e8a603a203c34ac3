/**
 * A real go-spiffe client (the conformance program, test/interop/go) against the real agent
 * process: how its calls are counted and how its connection closes are logged. A real node
 * counted every successful go-spiffe fetch as Canceled (they read their answer, then cancel)
 * and logged each connection close as "workload connection error: Protocol error" (grpc-go's
 * closing GOAWAY names its own last stream, which nghttp2 rejects).
 *
 * Needs Go (the program is built once and cached, see support/interop-builds.ts): in CI
 * (CI=true) a missing toolchain fails the suite, elsewhere it is skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { freePort, generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { buildGo, detectGo } from '../support/interop-builds.ts';

const TD = 'example.org';
const WORKLOAD_ID = `spiffe://${TD}/go-workload`;
const IN_CI = process.env['CI'] === 'true';
const GO = detectGo();
if (!IN_CI && !GO.ok) console.warn(`[go-spiffe] skipped: ${GO.reason}`);

let server: ServerHandle;
let agent: AgentHandle;
let metricsPort: number;
let goBin: string;

async function metricsText(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one series, exactly as exposed (undefined when absent). */
async function series(name: string): Promise<number | undefined> {
  const line = (await metricsText()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** Runs the go-spiffe program as a workload of this uid; resolves with its pid and output. */
function runGo(args: string[]): Promise<{ pid: number | undefined; code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(goBin, args, { env: { PATH: process.env['PATH'], SPIFFE_ENDPOINT_SOCKET: `unix://${agent.socketPath}` }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ pid: child.pid, code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, output: stdout + stderr });
    });
  });
}

describe.skipIf(!IN_CI && !GO.ok)('go-spiffe against the agent', () => {
  beforeAll(async () => {
    goBin = await buildGo(GO);
    server = await startServerProcess({ trustDomain: TD });
    metricsPort = await freePort();
    agent = await startAgentProcess({
      server,
      joinToken: await generateJoinToken(server),
      extraTopLevel: `telemetry {\n  Prometheus {\n    host = "127.0.0.1"\n    port = ${metricsPort}\n  }\n}`,
    });
    const agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
    const out = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', WORKLOAD_ID, '-selector', `unix:uid:${process.getuid?.() ?? 0}`);
    expect(out.stderr).toBe('');
    // The SVID is cached before the workload asks, so no call of the test is refused first.
    await eventually(async () => {
      if ((await series('spiffe_agent_lru_cache_svid_map_size{svid_type="x509"}')) !== 1) throw new Error('SVID not cached yet');
    }, 30_000);
  }, 600_000);

  afterAll(async () => {
    await agent?.cleanup();
    await server?.cleanup();
  });

  it('one-shot fetches and sources closed after their first update are counted OK, and their connection closes are not errors', async () => {
    const logFrom = agent.logs().length;
    // X509Source, FetchX509Context, FetchX509Bundles, FetchJWTBundles, a BundleSource, one
    // one-shot FetchX509SVID; three connections (two sources and one client), each closed.
    const run = await runGo(['x509', '-id', WORKLOAD_ID, '-oneshots', '1']);
    expect(run.code, run.output).toBe(0);
    await eventually(async () => {
      if ((await series('spiffe_agent_workload_api_connections')) !== 0) throw new Error('connections still open');
    });
    const rpcLines = (await metricsText()).split('\n').filter((l) => l.startsWith('spiffe_agent_workload_api_rpcs_total{'));
    expect(rpcLines.sort()).toEqual(
      [
        'spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="OK"} 4',
        'spiffe_agent_workload_api_rpcs_total{method="FetchX509Bundles",status="OK"} 1',
        'spiffe_agent_workload_api_rpcs_total{method="FetchJWTBundles",status="OK"} 2',
      ].sort(),
    );

    const logged = (): Array<Record<string, unknown>> =>
      agent
        .logs()
        .slice(logFrom)
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l['caller_pid'] === run.pid);
    const ends = await eventually(async () => {
      const found = logged().filter((l) => String(l['msg']).startsWith('workload connection'));
      if (found.length < 3) throw new Error(`${found.length} connection ends logged`);
      return found;
    });
    expect(ends.map(({ level, msg, http2_error }) => ({ level, msg, http2_error }))).toEqual(
      Array.from({ length: 3 }, () => ({ level: 'debug', msg: 'workload connection ended with no call open', http2_error: 'Protocol error' })),
    );
    const calls = logged().filter((l) => l['msg'] === 'workload api call');
    expect(calls.map(({ level, code, error }) => ({ level, code, error }))).toEqual(Array.from({ length: 7 }, () => ({ level: 'debug', code: 'OK', error: undefined })));
  }, 90_000);
});
