/**
 * Large-response benchmark (issue 10): a workload entitled to 5,000 SVIDs.
 *
 *   node bench/large-response.ts [svids] [streams]
 *
 * 1. Encode: building and serializing the X509SVIDResponse of one state (done once per state
 *    and shared by every stream with equal selectors), median and max of 20 fresh states.
 * 2. Serve: a Workload API server in a child process (real socket, real attestation, identities
 *    from a map-driven source with realistic DER sizes) while this process opens `streams`
 *    FetchX509SVID streams with a 64 MiB receive limit, then pushes 5 rotations to all of them.
 *    The child reports its event-loop delay (monitorEventLoopDelay) for each phase.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { pino } from 'pino';
import { WorkloadApiClient } from '../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../src/gen/X509SVIDResponse.ts';
import { startWorkloadApi } from '../src/agent/workload-api/workload-api.ts';
import { encodedX509SvidResponse } from '../src/agent/workload-api/x509-svid-response.ts';
import type { WorkloadState, X509Identity } from '../src/agent/manager/workload-state.ts';
import { FakeIdentitySource, securityHeader, snapshot, uidAttestor } from '../test/support/workload-api-fixtures.ts';

const TD = 'example.org';
// Sizes as the real server and agent produce them (P-256 leaf, PKCS#8 key, P-256 root).
const LEAF_BYTES = 560;
const KEY_BYTES = 138;
const ROOT_BYTES = 520;

function identities(count: number, generation: number): X509Identity[] {
  return Array.from({ length: count }, (_, i) => ({
    entryId: `entry-${String(i).padStart(5, '0')}`,
    spiffeId: `spiffe://${TD}/bulk/w${String(i).padStart(5, '0')}`,
    hint: '',
    createdAt: 1000,
    certChain: randomBytes(LEAF_BYTES + (generation % 2)),
    privateKey: randomBytes(KEY_BYTES),
    expiresAt: 2_000_000_000,
    federatesWith: [],
  }));
}

const bundles = snapshot(TD, { x509: new Map([[TD, randomBytes(ROOT_BYTES)]]) });

async function serve(socketPath: string, count: number): Promise<void> {
  const source = new FakeIdentitySource(bundles);
  const selector = `unix:uid:${process.geteuid?.() ?? 0}`;
  // Every rotation's identities are made up front, so only the agent's own work is measured.
  const generations = Array.from({ length: 7 }, (_, g) => identities(count, g));
  let generation = 0;
  source.setIdentities(selector, generations[0] as X509Identity[]);
  const server = await startWorkloadApi({ socketPath, source, attestor: uidAttestor(), logger: pino({ level: 'silent' }) });
  const notifyMs: number[] = [];
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  process.stdout.write('{"ready":true}\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line === 'reset') delay.reset();
    else if (line === 'rotate') {
      // The turn that notifies every stream: encoding once, and whatever each send does at once.
      const started = performance.now();
      source.setIdentities(selector, generations[++generation % generations.length] as X509Identity[]);
      notifyMs.push(performance.now() - started);
    }
    else if (line === 'report') {
      const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
      const notify = notifyMs.splice(0).sort((a, b) => a - b);
      const median = notify.length === 0 ? undefined : Math.round((notify[notify.length >> 1] as number) * 10) / 10;
      process.stdout.write(`${JSON.stringify({ maxMs: ms(delay.max), p99Ms: ms(delay.percentile(99)), meanMs: ms(delay.mean), notifyTurnMedianMs: median })}\n`);
    } else if (line === 'quit') break;
  }
  await server.close();
  process.exit(0);
}

function measureEncode(count: number): { bytes: number; medianMs: number; maxMs: number } {
  const ids = identities(count, 0);
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 20; i++) {
    const state: WorkloadState = { identities: ids, bundles };
    const started = performance.now();
    const outcome = encodedX509SvidResponse(state);
    times.push(performance.now() - started);
    if (!outcome.ok) throw outcome.error;
    bytes = outcome.bytes.length;
  }
  times.sort((a, b) => a - b);
  const round = (n: number): number => Math.round(n * 10) / 10;
  return { bytes, medianMs: round(times[10] as number), maxMs: round(times[19] as number) };
}

async function main(count: number, streams: number): Promise<void> {
  console.log(`encode ${count} SVIDs:`, measureEncode(count));

  const dir = await mkdtemp(join(tmpdir(), 'sna-large-'));
  const socketPath = join(dir, 'agent.sock');
  const child = spawn(process.execPath, [import.meta.filename, 'serve', socketPath, String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const replies = createInterface({ input: child.stdout });
  const ask = async (command: string): Promise<unknown> => {
    const reply = new Promise<string>((resolve) => replies.once('line', resolve));
    child.stdin.write(`${command}\n`);
    return JSON.parse(await reply) as unknown;
  };
  const send = (command: string): void => void child.stdin.write(`${command}\n`);
  await new Promise((r) => replies.once('line', r));

  const clients = Array.from({ length: streams }, () =>
    new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 }),
  );
  send('reset');
  const received: number[] = new Array<number>(streams).fill(0);
  const waiters: Array<() => void> = [];
  const calls: ClientReadableStream<X509SVIDResponse__Output>[] = [];
  const started = performance.now();
  clients.forEach((c, i) => {
    const call = c.FetchX509SVID({}, securityHeader()) as ClientReadableStream<X509SVIDResponse__Output>;
    call.on('data', (res: X509SVIDResponse__Output) => {
      if (res.svids.length !== count) throw new Error(`got ${res.svids.length} SVIDs`);
      received[i] = (received[i] ?? 0) + 1;
      for (const w of waiters.splice(0)) w();
    });
    call.on('error', (err: Error) => {
      if (!/Cancelled/.test(err.message)) throw err;
    });
    calls.push(call);
  });
  const until = async (n: number): Promise<void> => {
    while (!received.every((r) => r >= n)) await new Promise<void>((r) => waiters.push(r));
  };
  await until(1);
  console.log(`${streams} streams, first response each: ${Math.round(performance.now() - started)} ms; agent event-loop delay:`, await ask('report'));

  send('reset');
  const rotations = 5;
  const rotStarted = performance.now();
  for (let n = 2; n <= rotations + 1; n++) {
    send('rotate');
    await until(n);
  }
  console.log(`${rotations} rotations pushed to ${streams} streams: ${Math.round((performance.now() - rotStarted) / rotations)} ms each; agent event-loop delay:`, await ask('report'));

  for (const call of calls) call.cancel();
  for (const c of clients) c.close();
  send('quit');
  await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'serve') await serve(rest[0] as string, Number(rest[1]));
else await main(Number(role ?? 5000), Number(rest[0] ?? 10));
