/**
 * The agent's control loop, independent of sockets: keep an agent identity (stored,
 * attested, renewed or re-attested), and sync entries and bundles from the server into the
 * cache manager, retrying on errors. What an error leads to (retry, re-attest, stop for
 * good) is decided in server-error-policy.ts.
 *
 * Recovery after an outage: retries come every sync interval (with jitter), never slower,
 * and each retry after an error runs on a fresh gRPC channel, so the channel's own
 * reconnect backoff (grpc-js: up to 120 s) never adds to ours. An agent is therefore back
 * in sync within about one interval of the server's return, however long it was away.
 */
import { readFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import type { Clock } from '../common/clock.ts';
import type { Logger } from '../common/logger.ts';
import { ApiError, Code, toApiError } from '../common/errors.ts';
import { secondsSince } from '../common/recorders.ts';
import { createCsr, newKeyAndCsr } from '../common/csr.ts';
import { certificatesToPem, decodePemCertificates } from '../common/pem.ts';
import { fromSpiffeBundleJson } from '../common/spiffe-bundle.ts';
import type { NodeAttestor } from '../attestors/node/node-attestor.ts';
import type { AgentConfig } from './config.ts';
import { checkSpiffeIdentity, connectToServer, type ServerClients } from './server-client/connection.ts';
import { ServerTlsSelector, type ProbeTarget } from './server-client/tls-fallback.ts';
import { attestAgent } from './server-client/attest.ts';
import { ServerApi } from './server-client/server-api.ts';
import { agentSvid, isSignedByAny, isUsable, type AgentSvid } from './agent-svid.ts';
import { shouldRotate } from './svid/rotation-policy.ts';
import { deleteState, loadServerTlsModes, loadState, saveServerTlsModes, saveState, serverTlsFile, stateFile } from './storage.ts';
import { decideOnServerError, isUnknownAuthority, type FailedStep, type RootsSource } from './server-error-policy.ts';
import type { CacheManager } from './manager/cache-manager.ts';
import { toCachedEntry, type CachedEntry } from './manager/entries.ts';
import { TaintTracker, toTrustDomainBundle, type TrustDomainBundle } from './manager/bundles.ts';
import { NOOP_LIFECYCLE_METRICS, type LifecycleMetrics } from './lifecycle-metrics.ts';

export interface LifecycleOptions {
  config: AgentConfig;
  logger: Logger;
  clock: Clock;
  nodeAttestor: NodeAttestor;
  manager: CacheManager;
  /** Shares the current connection with the cache manager's minter. */
  api: ServerApi;
  random?: () => number;
  /** Syncs, node attestations and agent SVID rotations; nothing is recorded when absent. */
  metrics?: LifecycleMetrics;
}

/**
 * Why the loop ended: stop() was called, the server banned the agent, or an error no retry
 * can fix (`message` says what an operator must do).
 */
export type LifecycleEnd = { reason: 'stopped' } | { reason: 'banned'; message: string } | { reason: 'fatal'; message: string };

/** Retry failures logged as warnings before they are logged once a minute. */
const RETRY_WARNINGS = 3;
const RETRY_WARNING_EVERY_MS = 60_000;

/** An error the server returned to AttestAgent, kept apart from local and later failures. */
class AttestationFailed extends Error {
  readonly error: ApiError;
  constructor(error: ApiError) {
    super(error.message);
    this.error = error;
  }
}

/** Reads the configured bootstrap bundle (PEM or SPIFFE JSON). */
export async function readBootstrapBundle(config: AgentConfig): Promise<Buffer[] | undefined> {
  const source = config.trustBundle;
  if (source.kind === 'insecure') return undefined;
  let text: string;
  try {
    text = await readFile(source.path, 'utf8');
  } catch (err) {
    throw new ApiError(Code.INVALID_ARGUMENT, `config: agent.trust_bundle_path: cannot read ${source.path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (source.format === 'spiffe') {
    const parsed = fromSpiffeBundleJson(text);
    if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `config: agent.trust_bundle_path: ${source.path}: ${parsed.error}`);
    return parsed.value.x509Authorities;
  }
  try {
    return decodePemCertificates(text);
  } catch (err) {
    throw new ApiError(Code.INVALID_ARGUMENT, `config: agent.trust_bundle_path: ${source.path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The running loop; `stop()` ends it. */
export class AgentLifecycle {
  readonly #o: LifecycleOptions;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #metrics: LifecycleMetrics;
  #identity: AgentSvid | undefined;
  #lastSyncAt: number | undefined;
  #roots: Buffer[] | undefined;
  #rootsSource: RootsSource;
  #clients: ServerClients | undefined;
  #clientsKey = '';
  /** TLS 1.2 without tickets once the server shows spiffe/spire#7076 (tls-fallback.ts). */
  readonly #tls: ServerTlsSelector;
  #stopped = false;
  #wake: (() => void) | undefined;
  /** Failed attempts since the last successful sync. */
  #failures = 0;
  #failingSince = 0;
  #lastRetryWarningAt = 0;
  /** Own roots already found tainted, so each taint is acted on once. */
  readonly #taints = new TaintTracker();
  /**
   * The current SVID is signed by a root the server tainted: rotate now, not at half-life
   * (before the authority is revoked and the server refuses the SVID). Cleared by a new SVID.
   */
  #identityTainted = false;
  /** The SVID (chain PEM) whose refusal by the server was last explained, so each is explained once. */
  #refusalExplained: string | undefined;
  /** Resolves when the loop ends. */
  readonly done: Promise<LifecycleEnd>;

  constructor(opts: LifecycleOptions, bootstrapRoots: Buffer[] | undefined) {
    this.#o = opts;
    this.#log = opts.logger;
    this.#random = opts.random ?? Math.random;
    this.#metrics = opts.metrics ?? NOOP_LIFECYCLE_METRICS;
    this.#roots = bootstrapRoots;
    this.#rootsSource = bootstrapRoots === undefined ? 'insecure' : 'bootstrap';
    this.#tls = new ServerTlsSelector(opts.logger, () => opts.clock.now());
    this.done = this.#run();
  }

  /** The connection to the server for the current identity and roots (reconnects on change). */
  clients(): ServerClients {
    const identity = this.#identity;
    const rootsPem = this.#roots === undefined ? undefined : certificatesToPem(this.#roots);
    const tlsMode = this.#tls.mode;
    const key = `${identity?.certChainPem ?? ''}|${rootsPem ?? ''}|${tlsMode}`;
    if (this.#clients === undefined || key !== this.#clientsKey) {
      this.#clients?.close();
      this.#clients = connectToServer({
        address: this.#serverAddress,
        trustDomain: this.#o.config.trustDomain,
        rootsPem,
        ...(identity === undefined ? {} : { identity }),
        reconnectBackoffMaxMs: this.#o.config.syncIntervalMs,
        tlsMode,
      });
      this.#clientsKey = key;
    }
    return this.#clients;
  }

  /**
   * Closes the channel so the next call opens a fresh one. Done before each retry: a channel
   * that failed sits in grpc-js's reconnect backoff and would fail the retry at once, even
   * with the server back. Calls already running on it finish; calls waiting for it to
   * connect fail with UNAVAILABLE (the server was unreachable for them anyway).
   */
  #dropClients(): void {
    this.#clients?.close();
    this.#clients = undefined;
  }

  /** The agent's current SPIFFE ID, once it has one. */
  get agentId(): string | undefined {
    return this.#identity?.spiffeId;
  }

  /** When the current agent SVID expires (clock milliseconds), once the agent has one. */
  get agentSvidExpiresAt(): number | undefined {
    return this.#identity?.notAfter;
  }

  /** The agent's current SVID (chain and key), once it has one. */
  get agentSvid(): AgentSvid | undefined {
    return this.#identity;
  }

  /** When the last successful sync finished (clock milliseconds), if any. */
  get lastSyncAt(): number | undefined {
    return this.#lastSyncAt;
  }

  /** Ends the loop after the current step. */
  stop(): Promise<LifecycleEnd> {
    this.#stopped = true;
    this.#wake?.();
    return this.done;
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  /**
   * The wait before the next retry: one sync interval, ±10 % jitter, however many attempts
   * failed. SPIRE starts there too but backs off ×1.5 up to 48 intervals (4 min at 5 s), and
   * its agent then needs up to that long to notice the server is back. Here an agent is back
   * within one interval of the server's return, and never asks more often than it syncs
   * when healthy (the jitter spreads a fleet's retries).
   */
  #retryDelay(): number {
    return this.#o.config.syncIntervalMs * (0.9 + 0.2 * this.#random());
  }

  async #loadStoredIdentity(): Promise<void> {
    const stored = await loadState(this.#o.config.dataDir);
    if (stored === undefined) return;
    if (stored.trustDomain !== this.#o.config.trustDomain) {
      throw new ApiError(Code.FAILED_PRECONDITION, `storage: stored identity belongs to trust domain "${stored.trustDomain}", not "${this.#o.config.trustDomain}"; move ${this.#o.config.dataDir}/agent-data.json away to re-attest`);
    }
    if (stored.bundle.length > 0) {
      this.#roots = stored.bundle; // the stored bundle beats the bootstrap one
      this.#rootsSource = 'stored';
    }
    if (stored.key === undefined || stored.svid.length === 0) return;
    const svid = agentSvid(stored.svid, stored.key, stored.reattestable);
    if (isUsable(svid, this.#o.clock.now())) {
      this.#identity = svid;
      this.#log.info({ spiffe_id: svid.spiffeId, expires_at: new Date(svid.notAfter).toISOString() }, 'reusing stored agent SVID');
    } else {
      this.#log.info({ spiffe_id: svid.spiffeId }, 'stored agent SVID has expired; attesting again');
    }
  }

  async #persist(): Promise<void> {
    const identity = this.#identity;
    if (identity === undefined) return;
    await saveState(this.#o.config.dataDir, {
      trustDomain: this.#o.config.trustDomain,
      svid: [...identity.certChain],
      key: this.#o.config.keyManager === 'disk' ? identity.key : undefined,
      bundle: this.#roots ?? [],
      reattestable: identity.reattestable,
    });
  }

  async #attest(): Promise<void> {
    try {
      await this.#attestOnce();
      this.#metrics.nodeAttestation.inc(Code.OK);
    } catch (err) {
      this.#metrics.nodeAttestation.inc(toApiError(err instanceof AttestationFailed ? err.error : err).code);
      throw err;
    }
  }

  async #attestOnce(): Promise<void> {
    const attestor = this.#o.nodeAttestor;
    // Local failures (e.g. a k8s_psat token file not written yet) come before the server is
    // asked, and are always retried.
    const payload = await attestor.payload();
    const { privateKey, csr } = newKeyAndCsr();
    // AttestAgent runs on its own connection, so a valid SVID we already hold stays in use if
    // (re-)attestation fails. It runs without a client certificate, except on a server that
    // needs TLS 1.2 (spiffe/spire#7076): there TLS 1.2 requires one, and AttestAgent ignores it.
    const tlsMode = this.#tls.mode;
    const current = this.#usableIdentity;
    const anonymous = connectToServer({
      address: this.#serverAddress,
      trustDomain: this.#o.config.trustDomain,
      rootsPem: this.#roots === undefined ? undefined : certificatesToPem(this.#roots),
      ...(tlsMode === 'default' || current === undefined ? {} : { identity: current, tlsMode }),
    });
    let result: Awaited<ReturnType<typeof attestAgent>>;
    try {
      result = await attestAgent(anonymous.agent, {
        type: attestor.type,
        payload,
        csr,
        ...(attestor.respond === undefined ? {} : { respond: (c: Buffer) => (attestor.respond as (c: Buffer) => Promise<Buffer>)(c) }),
      });
    } catch (err) {
      throw new AttestationFailed(toApiError(err));
    } finally {
      anonymous.close();
    }
    // Persist before anything else: the server has recorded this agent (and consumed a join
    // token), so from here on a crash that loses the SVID can leave the agent unable to
    // attest again. What remains of that window is the response's transit and this write.
    this.#identity = agentSvid(result.certChain, privateKey, result.reattestable);
    this.#identityTainted = false;
    await this.#persist();
    this.#log.info({ spiffe_id: result.spiffeId, attestor: attestor.type, expires_at: new Date(this.#identity.notAfter).toISOString() }, 'node attested');
    if (!result.reattestable && this.#o.config.keyManager === 'memory') {
      this.#log.warn(
        { attestor: attestor.type },
        'node attestation is not reattestable and the "memory" key manager is in use: after a restart the agent cannot get a new SVID until its record is evicted on the server (use KeyManager "disk")',
      );
    }
    // The bundle comes over the now-authenticated connection (for insecure bootstrap, this is
    // the first time the agent learns it).
    const bundle = await this.#o.api.getBundle();
    this.#roots = bundle.x509_authorities.map((a) => a.asn1);
    this.#rootsSource = 'server';
    await this.#persist();
  }

  async #rotateIfDue(): Promise<void> {
    const identity = this.#identity;
    if (identity === undefined) return;
    if (!this.#identityTainted && !shouldRotate(this.#o.clock.now(), identity.notBefore, identity.notAfter, this.#random())) return;
    const reason = this.#identityTainted ? 'tainted authority' : 'rotation time';
    try {
      await this.#rotate(identity, reason);
      this.#metrics.agentSvidRotation.inc(Code.OK);
    } catch (err) {
      this.#metrics.agentSvidRotation.inc(toApiError(err).code);
      throw err;
    }
  }

  async #rotate(identity: AgentSvid, reason: string): Promise<void> {
    if (identity.reattestable) {
      await this.#attest();
      this.#log.info({ spiffe_id: identity.spiffeId, reason }, 'agent SVID rotated by attesting again');
      return;
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const renewed = await this.#o.api.renewAgent(createCsr(privateKey, publicKey));
    this.#identity = agentSvid(renewed.certChain, privateKey, false);
    this.#identityTainted = false;
    await this.#persist();
    this.#log.info({ spiffe_id: identity.spiffeId, reason, expires_at: new Date(this.#identity.notAfter).toISOString() }, 'agent SVID rotated');
  }

  async #timedSync(): Promise<void> {
    const started = performance.now();
    try {
      await this.#sync();
    } catch (err) {
      this.#metrics.sync.record(toApiError(err).code, secondsSince(started));
      throw err;
    }
    this.#metrics.sync.record(Code.OK, secondsSince(started));
    this.#lastSyncAt = this.#o.clock.now();
  }

  async #sync(): Promise<void> {
    const manager = this.#o.manager;
    const cached = manager.entries;
    const synced = await this.#o.api.authorizedEntries(cached);
    // Unchanged entries keep their objects (every sync used to rebuild all of them: garbage
    // and CPU in proportion to the entry count, every sync interval).
    const entries: CachedEntry[] = synced.unchanged;
    for (const e of synced.fetched) {
      const have = cached.get(e.id);
      if (have !== undefined && have.revisionNumber === e.revision_number && have.createdAt === e.created_at) {
        entries.push(have);
        continue;
      }
      const converted = toCachedEntry(e);
      if (typeof converted === 'string') this.#log.warn({ error: converted }, 'skipping malformed entry');
      else entries.push(converted);
    }
    const ownBundle = await this.#o.api.getBundle();
    const own = toTrustDomainBundle(ownBundle);
    this.#checkTainted(own.taintedX509 ?? []);
    const federatedTds = new Set<string>();
    for (const e of entries) for (const td of e.federatesWith) if (td !== this.#o.config.trustDomain) federatedTds.add(td);
    const federated = new Map<string, TrustDomainBundle>();
    await Promise.all(
      [...federatedTds].sort().map(async (td) => {
        const b = await this.#o.api.getFederatedBundle(td);
        if (b !== undefined) federated.set(td, toTrustDomainBundle(b));
      }),
    );
    const newRoots = ownBundle.x509_authorities.map((a) => a.asn1);
    const rootsChanged = this.#roots === undefined || Buffer.concat(this.#roots).compare(Buffer.concat(newRoots)) !== 0;
    manager.applySync(entries, own, federated);
    this.#rootsSource = 'server';
    if (rootsChanged) {
      this.#roots = newRoots;
      await this.#persist();
    }
    await manager.mintDue();
  }

  /**
   * Marks the agent SVID for rotation when a newly tainted own root signed it (SPIRE's
   * forced rotation): once revoked, that root no longer verifies the SVID and the server
   * refuses it at the TLS handshake, which a join_token agent cannot recover from.
   */
  #checkTainted(tainted: readonly Buffer[]): void {
    const fresh = this.#taints.newlyTainted(tainted);
    const identity = this.#identity;
    if (identity === undefined || this.#identityTainted || !isSignedByAny(identity, fresh)) return;
    this.#identityTainted = true;
    this.#log.info({ spiffe_id: identity.spiffeId }, 'agent SVID is signed by a tainted X.509 authority: rotating it now');
  }

  /** After a successful sync: says so if the server had been unreachable, and resets the count. */
  #recovered(): void {
    if (this.#failures > 0) {
      this.#log.info(
        { failed_attempts: this.#failures, unreachable_for_s: Math.round((this.#o.clock.now() - this.#failingSince) / 100) / 10 },
        'synced with the server again',
      );
    }
    this.#failures = 0;
  }

  /** What the cache holds, in words that never claim more than it does. */
  #cacheWords(): string {
    const svids = this.#o.manager.stats().svids;
    if (svids > 0) return `serving ${svids} cached X509-SVID${svids === 1 ? '' : 's'} meanwhile`;
    if (this.#o.manager.synced) return 'no X509-SVIDs cached (the last synced entries and bundles are served)';
    return 'nothing cached yet: workloads get Unavailable until the first sync';
  }

  /** Acts on a failed step: returns how the loop ends, or undefined after waiting to retry. */
  async #onError(err: unknown): Promise<LifecycleEnd | undefined> {
    const step: FailedStep = err instanceof AttestationFailed ? 'attest' : 'call';
    const apiError = err instanceof AttestationFailed ? err.error : toApiError(err);
    const config = this.#o.config;
    const failingForMs = this.#failures === 0 ? 0 : this.#o.clock.now() - this.#failingSince;
    // A connection that failed for another reason than our roots: #7076, or our SVID refused?
    const probed = apiError.code === Code.UNAVAILABLE && !isUnknownAuthority(apiError) ? await this.#checkTlsMode() : undefined;
    const decision = decideOnServerError(apiError, {
      step,
      attestorType: this.#o.nodeAttestor.type,
      joinToken: config.nodeAttestor === 'join_token' ? config.joinToken : undefined,
      trustDomain: config.trustDomain,
      trustBundlePath: config.trustBundle.kind === 'insecure' ? undefined : config.trustBundle.path,
      stateFile: stateFile(config.dataDir),
      rootsSource: this.#rootsSource,
      failingForMs,
      reattestable: this.#identity?.reattestable ?? false,
      ...(probed === undefined ? {} : { svidRefused: probed }),
    });
    switch (decision.action) {
      case 'banned':
        await deleteState(config.dataDir);
        this.#identity = undefined;
        this.#log.error({ error: apiError.message }, 'agent is banned: stored identity deleted, stopping');
        this.#dropClients();
        return { reason: 'banned', message: apiError.message };
      case 'fatal':
        this.#log.error({ code: Code[apiError.code], error: apiError.message }, `stopping: ${decision.message}`);
        this.#dropClients();
        return { reason: 'fatal', message: decision.message };
      case 'reattest':
        this.#log.warn({ reason: decision.reason, error: apiError.message }, decision.message ?? 'server requires attestation again');
        this.#identity = undefined;
        break;
      case 'retry':
        if (decision.advice !== undefined && this.#identity !== undefined && this.#identity.certChainPem !== this.#refusalExplained) {
          this.#refusalExplained = this.#identity.certChainPem;
          this.#log.error({ spiffe_id: this.#identity.spiffeId, error: apiError.message }, decision.advice);
        }
        break;
    }
    if (this.#failures === 0) this.#failingSince = this.#o.clock.now();
    this.#failures++;
    const waitMs = this.#retryDelay();
    if (decision.action === 'retry') {
      const what = step === 'attest' || this.#identity === undefined ? 'node attestation failed' : 'server unreachable or refused';
      // Retries come every interval for as long as the outage lasts: warn for the first
      // few and then once a minute, with the rest at debug.
      const now = this.#o.clock.now();
      const warn = this.#failures <= RETRY_WARNINGS || now - this.#lastRetryWarningAt >= RETRY_WARNING_EVERY_MS;
      if (warn) this.#lastRetryWarningAt = now;
      this.#log[warn ? 'warn' : 'debug'](
        { code: Code[apiError.code], error: apiError.message, failed_attempts: this.#failures, retry_in_ms: Math.round(waitMs) },
        `${what}; ${this.#cacheWords()}; retrying`,
      );
    }
    await this.#sleep(waitMs);
    return undefined;
  }

  /**
   * After an Unavailable failure: whether the server needs TLS 1.2 (spiffe/spire#7076), or
   * refuses our SVID (returned with the alert it sent).
   */
  async #checkTlsMode(): Promise<{ alert: string | undefined } | undefined> {
    const finding = await this.#tls.afterUnavailable(this.#probeTarget());
    if (finding.kind === 'switched') {
      this.#dropClients();
      await this.#persistTlsMode();
    }
    return finding.kind === 'certificate-refused' ? { alert: finding.alert } : undefined;
  }

  /** What a TLS probe dials: the server as the channel does, with the agent SVID while it is usable. */
  #probeTarget(): ProbeTarget {
    const identity = this.#usableIdentity;
    const expected = `spiffe://${this.#o.config.trustDomain}/spire/server`;
    return {
      address: this.#serverAddress,
      trustDomain: this.#o.config.trustDomain,
      rootsPem: this.#roots === undefined ? undefined : certificatesToPem(this.#roots),
      ...(identity === undefined ? {} : { identity }),
      checkServerIdentity: (cert) => checkSpiffeIdentity(cert, expected),
    };
  }

  /** The agent SVID while it is usable (not expired): what is presented to the server. */
  get #usableIdentity(): AgentSvid | undefined {
    const identity = this.#identity;
    return identity !== undefined && isUsable(identity, this.#o.clock.now()) ? identity : undefined;
  }

  /** host:port of the server: what the TLS mode is remembered by. */
  get #serverAddress(): string {
    return `${this.#o.config.serverAddress}:${this.#o.config.serverPort}`;
  }

  /** Starts in the TLS mode an earlier run found for this server address (spiffe/spire#7076), saying so once. */
  async #restoreTlsMode(): Promise<void> {
    const { modes, problem } = await loadServerTlsModes(this.#o.config.dataDir);
    if (problem !== undefined) this.#log.warn({ error: problem }, 'cannot use the remembered server TLS mode; probing again when needed');
    const mode = modes[this.#serverAddress];
    if (mode === undefined || mode === 'default') return;
    this.#tls.restore(mode);
    this.#log.warn(
      { server: this.#serverAddress, mode, file: serverTlsFile(this.#o.config.dataDir), issue: 'https://github.com/spiffe/spire/issues/7076' },
      `spiffe://${this.#o.config.trustDomain}/spire/server needed TLS 1.2 without session tickets when last seen (spiffe/spire#7076): using it from the first call, still verifying its certificate chain and SPIFFE ID; the default mode is tried again after the first sync and hourly`,
    );
  }

  /** Remembers the current TLS mode for this server address in data_dir (atomic, like the agent state). */
  async #persistTlsMode(): Promise<void> {
    const dataDir = this.#o.config.dataDir;
    try {
      const { modes } = await loadServerTlsModes(dataDir);
      await saveServerTlsModes(dataDir, { ...modes, [this.#serverAddress]: this.#tls.mode });
    } catch (err) {
      this.#log.warn({ error: toApiError(err).message, file: serverTlsFile(dataDir) }, 'cannot remember the server TLS mode; the next start probes again');
    }
  }

  /** After a sync in `tls12-no-tickets` mode: back to the default when the server accepts it again (upgraded). */
  async #recheckTlsMode(): Promise<void> {
    if (this.#tls.mode === 'default') return;
    const target = this.#probeTarget();
    if (target.identity === undefined) return;
    if (!(await this.#tls.recheck(target))) return;
    this.#dropClients();
    await this.#persistTlsMode();
  }

  async #run(): Promise<LifecycleEnd> {
    try {
      await this.#loadStoredIdentity();
    } catch (err) {
      this.#log.error({ error: toApiError(err).message }, 'cannot use the stored agent state');
      throw err;
    }
    await this.#restoreTlsMode();
    while (!this.#stopped) {
      try {
        if (this.#failures > 0) this.#dropClients();
        if (this.#usableIdentity === undefined) await this.#attest();
        await this.#rotateIfDue();
        await this.#timedSync();
        this.#recovered();
        await this.#recheckTlsMode();
        // A taint found by this sync: rotate now rather than an interval later.
        if (this.#identityTainted) await this.#rotateIfDue();
        await this.#sleep(this.#o.config.syncIntervalMs);
      } catch (err) {
        const end = await this.#onError(err);
        if (end !== undefined) return end;
      }
    }
    this.#dropClients();
    return { reason: 'stopped' };
  }
}
