/**
 * A Workload API client in this process (grpc-js, the test's uid) for checks the CLIs cannot
 * make: watching a FetchX509SVID stream for changes, reading FetchJWTBundles.
 */
import { X509Certificate } from 'node:crypto';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import type { WorkloadApiClient } from '../../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../../src/gen/X509SVIDResponse.ts';
import type { JWTBundlesResponse__Output } from '../../../src/gen/JWTBundlesResponse.ts';
import { splitDerCertificates } from '../../support/svid-profile.ts';
import { first, securityHeader } from '../../support/workload-api-fixtures.ts';

/** One SVID of an X509SVIDResponse, decoded. */
export interface SeenSvid {
  spiffeId: string;
  serial: string;
  notAfter: number;
  leaf: X509Certificate;
  /** The own trust domain's roots sent with it. */
  bundle: X509Certificate[];
}

/** One message of a FetchX509SVID stream, with when it arrived. */
export interface SeenUpdate {
  at: number;
  svids: SeenSvid[];
  /** Federated bundles: trust domain ID → roots. */
  federated: Record<string, X509Certificate[]>;
}

const certs = (der: Uint8Array): X509Certificate[] => splitDerCertificates(der).map((d) => new X509Certificate(d));

export function decodeUpdate(res: X509SVIDResponse__Output): SeenUpdate {
  return {
    at: performance.now(),
    svids: res.svids.map((s) => {
      const leaf = certs(s.x509_svid)[0] as X509Certificate;
      return { spiffeId: s.spiffe_id, serial: leaf.serialNumber, notAfter: Date.parse(leaf.validTo), leaf, bundle: certs(s.bundle) };
    }),
    federated: Object.fromEntries(Object.entries(res.federated_bundles).map(([td, der]) => [td, certs(der)])),
  };
}

function summary(u: SeenUpdate): unknown {
  return {
    svids: u.svids.map((s) => ({ id: s.spiffeId, serial: s.serial, issuer: s.leaf.issuer, bundle: s.bundle.length })),
    federated: Object.keys(u.federated),
  };
}

/** A FetchX509SVID stream that records every message; `waitFor` polls what it has seen. */
export interface X509Watch {
  updates: SeenUpdate[];
  /** Resolves with the first update (at or after index `from`) that satisfies `pred`. */
  waitFor(pred: (u: SeenUpdate) => boolean, timeoutMs: number, from?: number): Promise<SeenUpdate>;
  close(): void;
}

export function watchX509(client: WorkloadApiClient): X509Watch {
  const updates: SeenUpdate[] = [];
  let failure: ServiceError | undefined;
  const stream: ClientReadableStream<X509SVIDResponse__Output> = client.FetchX509SVID({}, securityHeader());
  stream.on('data', (res: X509SVIDResponse__Output) => updates.push(decodeUpdate(res)));
  stream.on('error', (err: ServiceError) => {
    if (err.code !== 1) failure = err;
  });
  return {
    updates,
    async waitFor(pred, timeoutMs, from = 0) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = updates.slice(from).find(pred);
        if (hit !== undefined) return hit;
        if (failure !== undefined) throw new Error(`FetchX509SVID stream failed: ${failure.code} ${failure.details}`);
        if (Date.now() > deadline) throw new Error(`no matching FetchX509SVID update within ${timeoutMs} ms; seen: ${JSON.stringify(updates.map(summary))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => stream.cancel(),
  };
}

/** The first FetchJWTBundles message: trust domain ID → JWKS JSON text. */
export async function fetchJwtBundles(client: WorkloadApiClient): Promise<Record<string, string>> {
  const res = await first<JWTBundlesResponse__Output>(client.FetchJWTBundles({}, securityHeader()));
  return Object.fromEntries(Object.entries(res.bundles).map(([td, b]) => [td, Buffer.from(b).toString('utf8')]));
}
