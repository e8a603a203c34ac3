/**
 * A minimal grpc-js Workload API client for benchmarks: a generic client that sends an empty
 * X509SVIDRequest and returns the first response's raw bytes (no protobuf decoding on the
 * client side, so the client costs as little as grpc-js allows). It does not depend on the
 * repo's src/, so the same client measures any commit.
 */
import { Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';

const FETCH_X509_SVID = '/SpiffeWorkloadAPI/FetchX509SVID';
const EMPTY = Buffer.alloc(0);

/** The security header every Workload API call must carry. */
export function securityHeader(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

const md = securityHeader();

/**
 * A client on the agent's Unix socket. With a local subchannel pool, so a new client is a
 * new connection (grpc-js otherwise shares connections to one target between clients) and
 * close() takes the connection down.
 */
export function newClient(socketPath: string): Client {
  return new Client(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

/** Opens FetchX509SVID, resolves with the first response's size, then cancels the stream. */
export function fetchFirst(client: Client, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = false;
    const call = client.makeServerStreamRequest(
      FETCH_X509_SVID,
      () => EMPTY,
      (b: Buffer) => b,
      {},
      md,
      { deadline: Date.now() + timeoutMs },
    );
    call.on('data', (b: Buffer) => {
      if (done) return;
      done = true;
      resolve(b.length);
      call.cancel();
    });
    call.on('error', (err: ServiceError) => {
      if (done) return;
      done = true;
      reject(err);
    });
    call.on('end', () => {
      if (done) return;
      done = true;
      reject(new Error('stream ended without a response'));
    });
  });
}

/** A short name for a failed fetch: the gRPC status code name, or the error message. */
export function errorKind(err: unknown): string {
  const e = err as Partial<ServiceError>;
  if (typeof e.code === 'number') return `code ${e.code}: ${(e.details ?? '').slice(0, 60)}`;
  return (e.message ?? String(err)).slice(0, 60);
}
