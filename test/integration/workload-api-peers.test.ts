/**
 * Who the caller is: Workload API calls from other processes (another uid, a descendant that
 * inherited a dead process's connection, a caller outside the agent's PID namespace), plus
 * connection hygiene (no fd leaks) and survival of rapid stream open/cancel on one
 * connection (grpc-node#2872).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { Code } from '../../src/common/errors.ts';
import { startWorkloadApi, type WorkloadApiServer } from '../../src/agent/workload-api/workload-api.ts';
import { CALLER_PID_UNKNOWN } from '../../src/agent/workload-api/peer-credentials.ts';
import {
  FakeIdentitySource,
  first,
  identity,
  securityHeader,
  snapshot,
  uidAttestor,
  waitFor,
  workloadClient,
} from '../support/workload-api-fixtures.ts';
import { writePeerScripts, type PeerScripts } from '../support/workload-api-peer-scripts.ts';

const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;

let dir: string;
let socketPath: string;
let scripts: PeerScripts;
let source: FakeIdentitySource;
let server: WorkloadApiServer;
const children = new Set<ChildProcess>();

interface CallResult {
  status?: number | string;
  message?: string;
  messages: number;
  uid: number;
}

/** Runs a process and parses the JSON line it prints (the last one). */
async function runForResult(command: string, args: string[], options: Parameters<typeof spawn>[2] = {}): Promise<CallResult> {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  // 'close' fires once every holder of the stdout pipe (grandchildren included) is done.
  await once(child, 'close');
  children.delete(child);
  const line = out.trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as CallResult;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wlapi-peers-'));
  scripts = await writePeerScripts(dir);
  socketPath = join(dir, 'sockets', 'agent.sock');
  source = new FakeIdentitySource(snapshot('example.org'));
  source.setIdentities(SELF, [identity('entry-self')]);
  server = await startWorkloadApi({ socketPath, source, attestor: uidAttestor(), logger: pino({ level: 'silent' }) });
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('callers in other processes', () => {
  it.runIf(isRoot)('attests a process running as another uid: PermissionDenied without an entry, SVIDs with one', async () => {
    const asNobody = { uid: NOBODY, gid: NOBODY };
    const denied = await runForResult(process.execPath, [scripts.call, socketPath, 'FetchX509SVID'], asNobody);
    expect(denied).toMatchObject({ uid: NOBODY, status: Code.PERMISSION_DENIED, message: 'no identity issued', messages: 0 });

    source.setIdentities(`unix:uid:${NOBODY}`, [identity('entry-nobody')]);
    const served = await runForResult(process.execPath, [scripts.call, socketPath, 'FetchX509SVID'], asNobody);
    expect(served).toMatchObject({ uid: NOBODY, messages: 1 });
  });

  it('rejects a call over a connection whose connecting process has exited (PID-reuse guard) and closes it', async () => {
    const result = await runForResult(process.execPath, [scripts.reuse, socketPath, scripts.call]);
    expect(result).toMatchObject({
      status: Code.UNAUTHENTICATED,
      message: 'could not verify existence of the original caller: caller exit detected via pidfd',
    });
    await waitFor(() => server.connectionCount() === 0, 5_000, 'connection closed by the agent');
  });

  const canUnshare = isRoot && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;
  it.runIf(canUnshare)('answers Unauthenticated to a caller outside the agent PID namespace (SO_PEERCRED pid 0)', async () => {
    const nsSocket = join(dir, 'sockets', 'in-namespace.sock');
    const child = spawn(
      'unshare',
      ['--pid', '--kill-child', '--mount-proc', process.execPath, join(import.meta.dirname, '../support/workload-api-server-child.ts'), nsSocket],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.add(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
    });
    const client = workloadClient(nsSocket);
    const err = await first(client.FetchX509SVID({}, securityHeader())).catch((e: ServiceError) => e);
    client.close();
    expect(err).toMatchObject({ code: Code.UNAUTHENTICATED, details: CALLER_PID_UNKNOWN });
  });
});

describe('connection hygiene', () => {
  it('survives 3000 FetchX509SVID open/cancel cycles on one connection and still serves', async () => {
    const client = workloadClient(socketPath);
    try {
      for (let i = 0; i < 3000; i += 1) {
        const res = await first(client.FetchX509SVID({}, securityHeader()));
        expect(res.svids).toHaveLength(1);
      }
      expect(server.connectionCount()).toBe(1);
      const res = await first(client.FetchX509SVID({}, securityHeader()));
      expect(res.svids[0]?.spiffe_id).toBe('spiffe://example.org/entry-self');
      expect(server.connectionCount()).toBe(1);
      await waitFor(() => server.streamCount() === 0 && source.subscriberCount === 0, 5_000, 'stream cleanup');
    } finally {
      client.close();
    }
  }, 60_000);

  it('leaks no file descriptors over 200 connections (pidfds closed with their sockets)', async () => {
    // Warm up lazily initialised resources (native bindings, grpc-js internals) first.
    const warm = workloadClient(socketPath);
    await first(warm.FetchX509SVID({}, securityHeader()));
    warm.close();
    await waitFor(() => server.connectionCount() === 0, 5_000, 'warm-up connection closed');
    const before = openFds();

    for (let i = 0; i < 180; i += 1) {
      const socket = connect(socketPath);
      await once(socket, 'connect');
      socket.destroy();
    }
    for (let i = 0; i < 20; i += 1) {
      const client = workloadClient(socketPath);
      await first(client.FetchX509SVID({}, securityHeader()));
      client.close();
    }
    await waitFor(() => server.connectionCount() === 0, 5_000, 'all connections closed');
    await new Promise((r) => setTimeout(r, 50));
    expect(openFds()).toBe(before);
  });
});
