/**
 * What any local process can do to the Workload API socket (mode 0777) before it is
 * identified, and what one caller may hold: the connection gate (frame sizes, junk, the
 * first-request deadline, the byte bound), HTTP/2 errors after it (a close the grpc-go way is
 * not an error; junk that cuts calls is, rate-limited), the per-caller limits (per process,
 * per pod with real pod-shaped cgroups, calls per caller), and a live caller at the agent's
 * open-files limit. Real Unix sockets, real processes, real cgroups (as root).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, rmdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import http2 from 'node:http2';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { Code } from '../../src/common/errors.ts';
import { ManualClock, type Clock } from '../../src/common/clock.ts';
import { NOOP_WORKLOAD_API_METRICS, type WorkloadApiMetrics } from '../../src/agent/workload-api/metrics.ts';
import { HpackEncoder } from '../../src/agent/workload-api/hpack.ts';
import { CONNECTION_PREFACE, FrameFlag, FrameType, Http2ErrorCode } from '../../src/agent/workload-api/http2-frames.ts';
import type { CallerLimits } from '../../src/agent/workload-api/caller-limits.ts';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import {
  FakeIdentitySource,
  first,
  identity,
  securityHeader,
  snapshot,
  startTestWorkloadApi,
  type TestWorkloadApi,
} from '../support/workload-api-fixtures.ts';
import { withDescriptorsExhausted } from '../support/descriptors.ts';
import { frame, SETTINGS, SETTINGS_ACK } from '../support/http2-bytes.ts';

const NODE = process.execPath;
const CHILD = join(import.meta.dirname, '../support/workload-child.ts');
const isRoot = process.geteuid?.() === 0;
/** A cgroup v1 hierarchy this machine mounts and root can write (as the k8s e2e test uses). */
const CGROUP_ROOT = '/sys/fs/cgroup/pids';
const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;


/** A raw connection that records what the agent sends and when it closes. */
interface RawPeer {
  readonly socket: Socket;
  received(): Buffer;
  readonly closed: Promise<void>;
}

async function rawConnect(socketPath: string): Promise<RawPeer> {
  const socket = connect(socketPath);
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => undefined);
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** The error code of the GOAWAY frame in what the agent sent, if any. */
function goawayCode(bytes: Buffer): number | undefined {
  let offset = 0;
  while (offset + 9 <= bytes.length) {
    const length = bytes.readUIntBE(offset, 3);
    if (bytes[offset + 3] === FrameType.GOAWAY) return bytes.readUInt32BE(offset + 9 + 4);
    offset += 9 + length;
  }
  return undefined;
}

/** The header block of a FetchX509SVID request, as a client's first block on a connection. */
function fetchX509HeaderBlock(): Buffer {
  const fields: Array<[string, string]> = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', '/SpiffeWorkloadAPI/FetchX509SVID'],
    [':authority', 'localhost'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ['workload.spiffe.io', 'true'],
  ];
  return new HpackEncoder().encode(fields.map(([name, value]) => ({ name, value, neverIndex: false })));
}

/** Whether the agent sent a frame of `type` on `streamId`. */
function hasFrame(bytes: Buffer, type: number, streamId: number): boolean {
  let offset = 0;
  while (offset + 9 <= bytes.length) {
    const length = bytes.readUIntBE(offset, 3);
    if (bytes[offset + 3] === type && (bytes.readUInt32BE(offset + 5) & 0x7fff_ffff) === streamId) return true;
    offset += 9 + length;
  }
  return false;
}

/** Metrics that count gate and limit refusals by label. */
function countingMetrics(): { metrics: WorkloadApiMetrics; counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const counter = (key: string) => ({ inc: () => void counts.set(key, (counts.get(key) ?? 0) + 1) });
  return {
    counts,
    metrics: {
      ...NOOP_WORKLOAD_API_METRICS,
      gateRefused: (reason) => counter(`gate:${reason}`),
      limitRefused: (limit) => counter(`limit:${limit}`),
      peerCredentialErrors: (cause) => counter(`peer:${cause}`),
    },
  };
}

/** A client with a connection of its own (grpc-js otherwise shares one per target). */
function ownConnection(socketPath: string): WorkloadApiClient {
  return new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

function fetchError(client: WorkloadApiClient): Promise<ServiceError | undefined> {
  return first(client.FetchX509SVID({}, securityHeader())).then(
    () => undefined,
    (err: ServiceError) => err,
  );
}

let api: TestWorkloadApi;
let counts: Map<string, number>;
const clients: WorkloadApiClient[] = [];
const children = new Set<ChildProcess>();

async function start(extra: { limits?: CallerLimits; firstRequestDeadlineMs?: number; logger?: Logger; clock?: Clock } = {}): Promise<void> {
  const source = new FakeIdentitySource(snapshot('example.org'));
  source.setIdentities(SELF, [identity('entry-self')]);
  const counting = countingMetrics();
  counts = counting.counts;
  api = await startTestWorkloadApi(source, { metrics: counting.metrics, ...extra });
}

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const c of clients.splice(0)) c.close();
  await api?.close();
});

describe('the connection gate', () => {
  beforeEach(() => start({ firstRequestDeadlineMs: 400 }));

  it.each([
    {
      name: 'a frame header announcing 16 MiB is refused at once, before any payload',
      bytes: Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(0x0, 0, 1, 0xff_ffff)]),
      code: Http2ErrorCode.FRAME_SIZE_ERROR,
      reason: 'frame_too_large',
    },
    {
      name: 'the preface followed by junk is refused at once',
      bytes: Buffer.concat([CONNECTION_PREFACE, Buffer.from('\x00\x00\x04junk-junk-junk-junk')]),
      code: Http2ErrorCode.PROTOCOL_ERROR,
      reason: 'protocol_error',
    },
    {
      name: 'bytes that are not HTTP/2 are refused at once',
      bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      code: Http2ErrorCode.PROTOCOL_ERROR,
      reason: 'protocol_error',
    },
    {
      name: '32 KiB of frames without a request are refused',
      bytes: Buffer.concat([CONNECTION_PREFACE, SETTINGS, ...Array.from({ length: 2100 }, () => frame(0x6, 0, 0, Buffer.alloc(8)))]),
      code: Http2ErrorCode.ENHANCE_YOUR_CALM,
      reason: 'too_many_bytes',
    },
  ])('$name (GOAWAY, connection closed)', async ({ bytes, code, reason }) => {
    const peer = await rawConnect(api.socketPath);
    peer.socket.write(bytes);
    await peer.closed;
    expect(goawayCode(peer.received())).toBe(code);
    expect(counts.get(`gate:${reason}`)).toBe(1);
  });

  it.each([
    { name: 'sends nothing', bytes: Buffer.alloc(0) },
    { name: 'sends the preface and SETTINGS, then no request', bytes: Buffer.concat([CONNECTION_PREFACE, SETTINGS, SETTINGS_ACK]) },
  ])('a connection that $name is closed at the first-request deadline with GOAWAY NO_ERROR', async ({ bytes }) => {
    const peer = await rawConnect(api.socketPath);
    if (bytes.length > 0) peer.socket.write(bytes);
    await peer.closed;
    expect(goawayCode(peer.received())).toBe(Http2ErrorCode.NO_ERROR);
    expect(counts.get('gate:request_deadline')).toBe(1);
    expect(api.server.connectionCount()).toBe(0);
  });

  it('a client that sends its whole first request (60 KiB message) before acknowledging our SETTINGS is served', async () => {
    const peer = await rawConnect(api.socketPath);
    const block = fetchX509HeaderBlock();
    // A gRPC message of 60,000 bytes: an unknown length-delimited field (number 15), which the
    // request decoder skips.
    const payload = 60_000 - 4; // tag (1 byte) and a 3-byte varint length precede it
    const length = Buffer.from([(payload & 0x7f) | 0x80, ((payload >> 7) & 0x7f) | 0x80, payload >> 14]);
    const field = Buffer.concat([Buffer.from([0x7a]), length, Buffer.alloc(payload, 0x61)]); // field 15, wire type LEN
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0xea, 0x60]), field]); // uncompressed, 60,000 bytes
    const data: Buffer[] = [];
    for (let offset = 0; offset < message.length; offset += 16_384) {
      const last = offset + 16_384 >= message.length;
      data.push(frame(0x0, last ? FrameFlag.END_STREAM : 0, 1, message.subarray(offset, offset + 16_384)));
    }
    peer.socket.write(Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(FrameType.HEADERS, FrameFlag.END_HEADERS, 1, block), ...data]));
    await new Promise((r) => setTimeout(r, 50));
    peer.socket.write(SETTINGS_ACK);
    // The response's HEADERS frame on stream 1 arrives; no GOAWAY.
    await expect.poll(() => hasFrame(peer.received(), FrameType.HEADERS, 1), { timeout: 5_000 }).toBe(true);
    expect(goawayCode(peer.received())).toBeUndefined();
    expect(counts.get('gate:too_many_bytes')).toBeUndefined();
    peer.socket.destroy();
  });

  it('after the handoff to HTTP/2, an oversized frame still closes the connection', async () => {
    const peer = await rawConnect(api.socketPath);
    const block = fetchX509HeaderBlock();
    peer.socket.write(Buffer.concat([CONNECTION_PREFACE, SETTINGS, SETTINGS_ACK, frame(FrameType.HEADERS, FrameFlag.END_HEADERS, 1, block)]));
    // The request's message, then a frame far over the maximum.
    peer.socket.write(Buffer.concat([frame(0x0, FrameFlag.END_STREAM, 1, Buffer.alloc(5)), frame(0x0, 0, 3, 0xff_ffff)]));
    await peer.closed;
    expect(goawayCode(peer.received())).toBe(Http2ErrorCode.FRAME_SIZE_ERROR);
  });

  it('32 connections announcing 16 MiB frames do not stop a legitimate caller', async () => {
    const attackers = await Promise.all(Array.from({ length: 32 }, () => rawConnect(api.socketPath)));
    for (const a of attackers) a.socket.write(Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(0x0, 0, 1, 0xff_ffff), Buffer.alloc(60_000)]));
    const client = ownConnection(api.socketPath);
    clients.push(client);
    const res = await first(client.FetchX509SVID({}, securityHeader()));
    expect(res.svids.map((s) => s.spiffe_id)).toEqual(['spiffe://example.org/entry-self']);
    await Promise.all(attackers.map((a) => a.closed));
    expect(counts.get('gate:frame_too_large')).toBe(32);
  });
});

describe('HTTP/2 errors after the handoff', () => {
  const DATA = 0x0;
  const RST_STREAM = 0x3;
  const CANCEL = 0x8;
  let lines: Array<Record<string, unknown>>;
  let clock: ManualClock;

  beforeEach(async () => {
    lines = [];
    clock = new ManualClock();
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        callback();
      },
    });
    await start({ logger: pino({ level: 'debug', base: undefined, timestamp: false }, destination), clock });
  });

  /** The log lines about connections (not calls). */
  const connectionLines = (): Array<Record<string, unknown>> => lines.filter((l) => String(l['msg']).startsWith('workload connection'));

  /** A raw connection with FetchX509SVID open on stream 1 and its first response received. */
  async function openCall(): Promise<RawPeer> {
    const peer = await rawConnect(api.socketPath);
    const request = frame(DATA, FrameFlag.END_STREAM, 1, Buffer.alloc(5)); // one empty message
    peer.socket.write(Buffer.concat([CONNECTION_PREFACE, SETTINGS, SETTINGS_ACK, frame(FrameType.HEADERS, FrameFlag.END_HEADERS, 1, fetchX509HeaderBlock()), request]));
    await expect.poll(() => hasFrame(peer.received(), DATA, 1), { timeout: 5_000 }).toBe(true);
    return peer;
  }

  it('a client that cancels its call and closes with a GOAWAY naming its own last stream (as grpc-go does) is not logged as an error', async () => {
    const peer = await openCall();
    const goaway = Buffer.alloc(8);
    goaway.writeUInt32BE(1, 0); // last stream ID: the client's own stream 1 (nghttp2 rejects it)
    peer.socket.end(Buffer.concat([frame(RST_STREAM, 0, 1, Buffer.from([0, 0, 0, CANCEL])), frame(FrameType.GOAWAY, 0, 0, goaway)]));
    await peer.closed;
    await expect
      .poll(connectionLines)
      .toEqual([{ level: 20, caller_pid: process.pid, http2_error: 'Protocol error', msg: 'workload connection ended with no call open' }]);
  });

  it('a protocol violation in the middle of a call is a workload connection error at info, once per caller per 10 s', async () => {
    const violate = async (): Promise<void> => {
      const peer = await openCall();
      peer.socket.write(frame(DATA, 0, 0, Buffer.alloc(4))); // DATA on stream 0: a connection error
      await peer.closed;
      // The agent's socket closes after its session has reported the failure.
      await expect.poll(() => api.server.connectionCount()).toBe(0);
    };
    const line = { level: 30, caller_pid: process.pid, error: 'Protocol error', calls_cut: 1, msg: 'workload connection error' };
    await violate();
    await expect.poll(connectionLines).toEqual([line]);
    await violate();
    clock.advance(10_000);
    await violate();
    await expect.poll(connectionLines).toEqual([line, { ...line, suppressed_since_last: 1 }]);
  });
});

describe('per-caller limits', () => {
  const limits: CallerLimits = { connectionsPerProcess: 3, connectionsPerPod: 5, callsPerCaller: 4, streamsPerConnection: 100 };
  beforeEach(() => start({ limits }));

  it('a process over its connection limit gets ResourceExhausted; closing one makes room', async () => {
    const held = Array.from({ length: 3 }, () => ownConnection(api.socketPath));
    clients.push(...held);
    for (const c of held) expect(await fetchError(c)).toBeUndefined();
    const extra = ownConnection(api.socketPath);
    clients.push(extra);
    const err = await fetchError(extra);
    expect(err?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err?.details).toBe('workload api: too many connections from this process (3 open); reuse one connection for all calls');
    expect(counts.get('limit:connections_per_process')).toBe(1);

    held[0]?.close();
    extra.close();
    const again = ownConnection(api.socketPath);
    clients.push(again);
    await expect.poll(() => fetchError(again).then((e) => e?.code), { timeout: 5_000 }).toBeUndefined();
  });

  it('a caller over its call limit gets ResourceExhausted on the next stream; ending one makes room', async () => {
    const client = ownConnection(api.socketPath);
    clients.push(client);
    const streams = Array.from({ length: 4 }, () => client.FetchX509SVID({}, securityHeader()));
    await Promise.all(streams.map((s) => once(s, 'data')));
    const err = await fetchError(client);
    expect(err?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err?.details).toBe('workload api: too many calls in progress from this process (4); one stream per source is enough');
    expect(counts.get('limit:calls_per_caller')).toBe(1);
    for (const s of streams) s.on('error', () => {});
    streams[0]?.cancel();
    await expect.poll(() => fetchError(client).then((e) => e?.code), { timeout: 5_000 }).toBeUndefined();
    for (const s of streams) s.cancel();
  });

  describe.runIf(isRoot)('pods (real pod-shaped cgroups)', () => {
    // Calls are not what this test counts.
    beforeEach(async () => {
      await api.close();
      await start({ limits: { ...limits, callsPerCaller: 100 } });
    });
    const podUid = randomUUID();
    const containers = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
    const podDir = join(CGROUP_ROOT, 'kubepods', 'besteffort', `pod${podUid}`);

    beforeEach(async () => {
      for (const id of containers) await mkdir(join(podDir, id), { recursive: true });
    });
    afterEach(async () => {
      for (const child of children) {
        child.kill('SIGKILL');
        await once(child, 'exit').catch(() => {});
      }
      children.clear();
      for (const id of containers) await rmdir(join(podDir, id)).catch(() => {});
      await rmdir(podDir).catch(() => {});
    });

    /** Runs the hold child inside a container of the pod; resolves its per-connection results. */
    async function holdInContainer(containerId: string, n: number): Promise<Array<{ event: string; code?: number; details?: string }>> {
      const script = `echo $$ > ${join(podDir, containerId, 'cgroup.procs')} && exec "$0" "$@"`;
      const child = spawn('sh', ['-c', script, NODE, CHILD, api.socketPath, 'hold', String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.add(child);
      const results: Array<{ event: string; code?: number; details?: string }> = [];
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const line of lines) results.push(JSON.parse(line) as { event: string });
      });
      await expect.poll(() => results.length, { timeout: 10_000 }).toBe(n);
      return results;
    }

    it('the processes of one pod share its connection limit; ResourceExhausted names the pod', async () => {
      const firstContainer = await holdInContainer(containers[0] as string, 3);
      expect(firstContainer.map((r) => r.event)).toEqual(['svids', 'svids', 'svids']);
      const second = await holdInContainer(containers[1] as string, 3);
      const refused = second.filter((r) => r.event === "error");
      expect(second.filter((r) => r.event === 'svids')).toHaveLength(2);
      expect(refused).toEqual([
        { event: 'error', conn: expect.any(Number), code: Code.RESOURCE_EXHAUSTED, details: 'workload api: too many connections from this pod (5 open); reuse one connection per process' },
      ]);
      expect(counts.get('limit:connections_per_pod')).toBe(1);
    });
  });
});

describe.runIf(isRoot)('a live caller at the agent\'s open-files limit', () => {
  beforeEach(() => start());

  it('gets Unavailable with the cause, counted, and a new connection once descriptors are free', async () => {
    // The child connects only when told (a line on stdin), once the descriptors are gone.
    const child = spawn('sh', ['-c', 'read go && exec "$0" "$@"', NODE, CHILD, api.socketPath, 'hold', '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.add(child);
    await once(child, 'spawn');
    // One descriptor left: accept() takes it, so the pidfd cannot be opened.
    const line = await withDescriptorsExhausted(1, () => {
      const answered = new Promise<string>((resolve) => child.stdout?.once('data', (d: Buffer) => resolve(d.toString().trim())));
      child.stdin?.write('go\n');
      // Bounded here: a test timeout would leave the descriptors taken.
      return Promise.race([answered, new Promise<string>((resolve) => setTimeout(() => resolve('{"event":"timeout"}'), 15_000))]);
    });
    expect(JSON.parse(line)).toEqual({
      event: 'error',
      conn: 0,
      code: Code.UNAVAILABLE,
      details: 'could not identify the caller: opening a pidfd (SO_PEERPIDFD) failed with EMFILE: the agent is out of file descriptors (raise its open-files limit)',
    });
    expect(counts.get('peer:EMFILE')).toBe(1);
    // The refused connection was closed; with descriptors free again a new one is served.
    const client = ownConnection(api.socketPath);
    clients.push(client);
    expect(await fetchError(client)).toBeUndefined();
  });
});

describe('half-sent requests', () => {
  /** Opens a FetchX509SVID stream on `session` and sends a 1 MiB message but its last `short` bytes. */
  function halfSent(session: http2.ClientHttp2Session, short: number): { stream: http2.ClientHttp2Stream; closed: Promise<number> } {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/SpiffeWorkloadAPI/FetchX509SVID',
      'content-type': 'application/grpc',
      te: 'trailers',
      'workload.spiffe.io': 'true',
    });
    stream.on('error', () => {});
    const size = 1024 * 1024;
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(size, 1);
    stream.write(prefix);
    stream.write(Buffer.alloc(size - short));
    return { stream, closed: new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0))) };
  }

  it('a connection holding more than 2 MiB of incomplete requests has the stream that passes it reset (ENHANCE_YOUR_CALM); closed streams stop counting', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), done()) }));
    await start({ logger });
    const session = http2.connect('http://localhost', { createConnection: () => connect(api.socketPath) });
    session.on('error', () => {});
    const a = halfSent(session, 16);
    const b = halfSent(session, 16);
    // Two incomplete 1 MiB requests (16 bytes short each): within the budget, both still open.
    await new Promise((r) => setTimeout(r, 300));
    expect([a.stream.closed, b.stream.closed]).toEqual([false, false]);
    const c = halfSent(session, 16);
    expect(await c.closed).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect([a.stream.closed, b.stream.closed]).toEqual([false, false]);
    const warned = lines.find((l) => l['msg'] === 'workload stream reset: the connection holds too many half-sent request bytes');
    expect(warned).toMatchObject({ caller_pid: process.pid, budget_bytes: 2 * 1024 * 1024 });
    // Neither the reset stream's bytes nor, once it closes, a's count any more: a new incomplete
    // request on the same connection fits beside b.
    a.stream.close();
    await a.closed;
    const d = halfSent(session, 16);
    await new Promise((r) => setTimeout(r, 300));
    expect([b.stream.closed, d.stream.closed]).toEqual([false, false]);
    session.destroy();
  });
});
