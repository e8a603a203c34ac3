/**
 * Test doubles for the Workload API server: a tiny identity source driven by maps, an
 * attestor that reads `unix:uid:<euid>` from /proc/<pid>/status, and client helpers.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Metadata, credentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { ApiError, Code } from '../../src/common/errors.ts';
import { selectorKey, type Selector } from '../../src/common/selector.ts';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { BundleSnapshot, JwtIdentity, WorkloadState, X509Identity } from '../../src/agent/manager/workload-state.ts';
import type { IdentitySource } from '../../src/agent/workload-api/identity-source.ts';
import type { AttestorReport, WorkloadAttestor } from '../../src/agent/workload-attestation/workload-attestor.ts';
import { startWorkloadApi, type WorkloadApiOptions, type WorkloadApiServer } from '../../src/agent/workload-api/workload-api.ts';

/** An empty bundle snapshot for a trust domain. */
export function snapshot(trustDomain: string, parts: Partial<Omit<BundleSnapshot, 'trustDomain'>> = {}): BundleSnapshot {
  return {
    trustDomain,
    x509: parts.x509 ?? new Map([[trustDomain, Buffer.from(`roots-of-${trustDomain}`)]]),
    jwks: parts.jwks ?? new Map(),
    jwtKeys: parts.jwtKeys ?? new Map(),
  };
}

/** An X509 identity with recognisable fake DER. */
export function identity(entryId: string, fields: Partial<X509Identity> = {}): X509Identity {
  return {
    entryId,
    spiffeId: fields.spiffeId ?? `spiffe://example.org/${entryId}`,
    hint: fields.hint ?? '',
    createdAt: fields.createdAt ?? 1000,
    certChain: fields.certChain ?? Buffer.from(`chain-${entryId}`),
    privateKey: fields.privateKey ?? Buffer.from(`key-${entryId}`),
    expiresAt: fields.expiresAt ?? 2_000_000_000,
    federatesWith: fields.federatesWith ?? [],
  };
}

interface Subscription {
  readonly selectors: readonly Selector[];
  readonly listener: (state: WorkloadState) => void;
}

/**
 * Identities per selector (`unix:uid:0` → [...]); a workload gets the union for its
 * selectors. Equal selector sets share one WorkloadState object until something changes,
 * as the real cache manager promises.
 */
export class FakeIdentitySource implements IdentitySource {
  #bundles: BundleSnapshot | undefined;
  readonly #x509 = new Map<string, X509Identity[]>();
  readonly #jwt = new Map<string, JwtIdentity[]>();
  readonly #subscriptions = new Set<Subscription>();
  readonly #states = new Map<string, WorkloadState>();
  /** When set, fetchJwtSvids rejects with it. */
  jwtError: ApiError | undefined;
  /** Audiences fetchJwtSvids was called with. */
  readonly jwtCalls: string[][] = [];

  constructor(bundles?: BundleSnapshot) {
    this.#bundles = bundles;
  }

  get subscriberCount(): number {
    return this.#subscriptions.size;
  }

  setBundles(bundles: BundleSnapshot): void {
    this.#bundles = bundles;
    this.#changed();
  }

  setIdentities(selector: string, identities: X509Identity[]): void {
    this.#x509.set(selector, identities);
    this.#changed();
  }

  setJwtSvids(selector: string, svids: JwtIdentity[]): void {
    this.#jwt.set(selector, svids);
  }

  /** Notifies every subscriber again without changing anything (a spurious update). */
  poke(): void {
    this.#changed();
  }

  #changed(): void {
    this.#states.clear();
    for (const sub of [...this.#subscriptions]) sub.listener(this.#state(sub.selectors));
  }

  #state(selectors: readonly Selector[]): WorkloadState {
    const bundles = this.bundles();
    const key = selectors.map(selectorKey).sort().join('|');
    let state = this.#states.get(key);
    if (state === undefined) {
      const identities = selectors.flatMap((s) => this.#x509.get(selectorKey(s)) ?? []);
      identities.sort((a, b) => (a.entryId < b.entryId ? -1 : a.entryId > b.entryId ? 1 : 0));
      state = { identities, bundles };
      this.#states.set(key, state);
    }
    return state;
  }

  subscribe(selectors: readonly Selector[], listener: (state: WorkloadState) => void): () => void {
    const state = this.#state(selectors);
    const sub: Subscription = { selectors, listener };
    this.#subscriptions.add(sub);
    listener(state);
    return () => void this.#subscriptions.delete(sub);
  }

  async fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[]): Promise<JwtIdentity[]> {
    this.jwtCalls.push([...audience]);
    if (this.jwtError !== undefined) throw this.jwtError;
    return selectors.flatMap((s) => this.#jwt.get(selectorKey(s)) ?? []);
  }

  bundles(): BundleSnapshot {
    if (this.#bundles === undefined) throw new ApiError(Code.UNAVAILABLE, 'cache: agent has not synced yet');
    return this.#bundles;
  }

  subscribeBundles(listener: (bundles: BundleSnapshot) => void): () => void {
    listener(this.bundles());
    return () => undefined;
  }
}

/** `unix:uid:<effective uid>` from /proc/<pid>/status. */
export function uidAttestor(procRoot = '/proc'): WorkloadAttestor & { calls: number } {
  const attestor = {
    calls: 0,
    async attest(pid: number): Promise<Selector[]> {
      attestor.calls += 1;
      let status: string;
      try {
        status = await readFile(`${procRoot}/${pid}/status`, 'utf8');
      } catch {
        throw new ApiError(Code.UNAVAILABLE, 'workload attestation failed');
      }
      const uid = /^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1];
      if (uid === undefined) throw new ApiError(Code.UNAVAILABLE, 'workload attestation failed');
      return [{ type: 'unix', value: `uid:${uid}` }];
    },
    async explain(pid: number): Promise<AttestorReport[]> {
      const started = performance.now();
      try {
        return [{ plugin: 'unix', durationMs: performance.now() - started, selectors: await attestor.attest(pid), steps: [] }];
      } catch (err) {
        return [{ plugin: 'unix', durationMs: performance.now() - started, error: { code: Code.UNAVAILABLE, message: (err as Error).message }, steps: [] }];
      }
    },
    /** The unix attestor knows no pods. */
    async explainPod(): Promise<AttestorReport[]> {
      return [];
    },
  };
  return attestor;
}

/** Metadata carrying the Workload API security header. */
export function securityHeader(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

/** A Workload API client on a Unix socket. */
export function workloadClient(socketPath: string): WorkloadApiClient {
  return new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure());
}

/** What a stream produced: its messages and how it ended (when it did). */
export interface StreamLog<T> {
  readonly messages: T[];
  error: ServiceError | undefined;
  ended: boolean;
}

/** Records everything a client stream emits. */
export function record<T>(stream: ClientReadableStream<T>): StreamLog<T> {
  const log: StreamLog<T> = { messages: [], error: undefined, ended: false };
  stream.on('data', (m: T) => log.messages.push(m));
  stream.on('error', (err: ServiceError) => {
    log.error = err;
  });
  stream.on('end', () => {
    log.ended = true;
  });
  return log;
}

/** A unary call as a promise. */
export function unaryCall<T>(fn: (cb: (err: ServiceError | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as T))));
}

/** The first message of a stream (then cancels it), or its error. */
export function first<T>(stream: ClientReadableStream<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    stream.once('data', (m: T) => {
      resolve(m);
      stream.cancel();
    });
    stream.on('error', (err: ServiceError) => {
      if (err.code !== Code.CANCELLED) reject(err);
    });
  });
}

/** The first FetchX509SVID response on `socketPath`, over a client opened for this call and closed after it. */
export function fetchX509Once(socketPath: string): Promise<X509SVIDResponse__Output> {
  const client = workloadClient(socketPath);
  return first<X509SVIDResponse__Output>(client.FetchX509SVID({}, securityHeader())).finally(() => client.close());
}

/** Waits until `predicate` holds (polling), or fails after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A Workload API server on a temp socket, with a client connected to it. */
export interface TestWorkloadApi {
  readonly dir: string;
  readonly socketPath: string;
  readonly source: FakeIdentitySource;
  readonly server: WorkloadApiServer;
  readonly client: WorkloadApiClient;
  /** Closes the client and the server, removes the temp dir. */
  close(): Promise<void>;
}

/** Starts a server (silent logs, `uidAttestor`) over `source` in a fresh temp dir. */
export async function startTestWorkloadApi(
  source: FakeIdentitySource,
  extra: Partial<Omit<WorkloadApiOptions, 'socketPath' | 'source'>> = {},
): Promise<TestWorkloadApi> {
  const dir = await mkdtemp(join(tmpdir(), 'wlapi-'));
  const socketPath = join(dir, 'sockets', 'agent.sock');
  const server = await startWorkloadApi({ socketPath, source, attestor: uidAttestor(), logger: pino({ level: 'silent' }), ...extra });
  const client = workloadClient(socketPath);
  return {
    dir,
    socketPath,
    source,
    server,
    client,
    async close() {
      client.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
