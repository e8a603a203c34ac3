/**
 * A workload process for tests, run as any uid: talks to the Workload API with a raw
 * grpc-js client and prints one JSON line per event on stdout.
 *
 *   node workload-child.ts <socket> fetch   → one FetchX509SVID message or the error
 *   node workload-child.ts <socket> watch   → every FetchX509SVID message until the stream ends
 *   node workload-child.ts <socket> hold N  → N connections, one FetchX509SVID stream each, held
 *                                             open; one line per connection: its first message or error
 */
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';

const [socketPath, mode, count] = process.argv.slice(2);
const md = new Metadata();
md.set('workload.spiffe.io', 'true');
const print = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

if (mode === 'hold') {
  // A local subchannel pool per client: each client gets a connection of its own.
  const clients = Array.from({ length: Number(count) }, () => new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  clients.forEach((c, conn) => {
    const held = c.FetchX509SVID({}, md);
    held.once('data', (res: X509SVIDResponse__Output) => print({ event: 'svids', conn, ids: res.svids.map((s) => s.spiffe_id) }));
    held.on('error', (err: ServiceError) => print({ event: 'error', conn, code: err.code, details: err.details }));
  });
  setInterval(() => {}, 60_000);
} else {
  runOnce();
}

function runOnce(): void {
  const client = new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure());

  const stream = client.FetchX509SVID({}, md);
  stream.on('data', (res: X509SVIDResponse__Output) => {
    print({ event: 'svids', ids: res.svids.map((s) => s.spiffe_id), uid: process.getuid?.() });
    if (mode === 'fetch') {
      stream.cancel();
      client.close();
    }
  });
  stream.on('error', (err: ServiceError) => {
    if (err.code !== 1 || mode !== 'fetch') print({ event: 'error', code: err.code, details: err.details });
    client.close();
  });
  stream.on('status', (status: { code: number }) => print({ event: 'status', code: status.code }));
  print({ event: 'started', pid: process.pid });
}
