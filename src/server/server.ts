/**
 * The server process: datastore + CA + node attestors behind two gRPC listeners.
 *
 * - The TLS listener (bind_address:bind_port) serves agents. It asks for a client
 *   certificate but does not require one (AttestAgent comes without); handlers decide
 *   per call who the caller is (see api/caller.ts).
 * - The admin listener is a Unix socket (socket_path, mode 0600) for the CLI.
 *
 * A single timer keeps the CA rotating and re-issues the server's own TLS SVID at half-life.
 */
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Server, ServerCredentials, experimental } from '@grpc/grpc-js';
import type { Clock } from '../common/clock.ts';
import { systemClock } from '../common/clock.ts';
import type { Logger } from '../common/logger.ts';
import { ApiError, Code } from '../common/errors.ts';
import { checkWritableFile, configPathError, PathError, withConfigPath } from '../common/path-errors.ts';
import { claimSocketPath, publishSocket, removeSocketIfOwned, type SocketFileId } from '../common/unix-socket-file.ts';
import { MemoryCertificateProvider } from '../common/certificate-provider.ts';
import { certificatesToPem } from '../common/pem.ts';
import { AgentService, BundleService, EntryService, HealthService, SvidService } from '../common/proto.ts';
import { openCertificateAuthority, type CertificateAuthority, type ServerIdentity } from './ca/index.ts';
import { openDatastore, type Datastore } from './datastore/datastore.ts';
import type { AttestedAgent, RegistrationEntry } from './datastore/types.ts';
import { authorizedEntries, buildEntryIndex, type EntryIndex } from './authorized-entries.ts';
import type { ServerConfig } from './config.ts';
import { createJoinTokenAttestor } from './node-attestors/join-token.ts';
import { createK8sPsatAttestor } from './node-attestors/k8s-psat.ts';
import type { NodeAttestor } from './node-attestors/node-attestor.ts';
import { adminSocketResolver, tlsCallerResolver, type CallerResolver } from './api/caller.ts';
import { createAgentService, type AgentStore } from './api/agent-service.ts';
import { createEntryService } from './api/entry-service.ts';
import { createSvidService } from './api/svid-service.ts';
import { createBundleService } from './api/bundle-service.ts';
import { createHealthService } from './api/health-service.ts';

export interface ServerOptions {
  config: ServerConfig;
  logger: Logger;
  clock?: Clock;
}

/** A running server. */
export interface RunningServer {
  /** The TLS port actually bound (useful with bind_port 0). */
  readonly port: number;
  readonly ca: CertificateAuthority;
  readonly datastore: Datastore;
  /** Stops both listeners (in-flight calls are cancelled) and closes the datastore. */
  stop(): Promise<void>;
}

/** How long stop() lets in-flight calls finish before cutting them. */
const STOP_GRACE_MS = 2_000;

/** Builds the node attestors the config enables. */
function nodeAttestors(config: ServerConfig, datastore: Datastore, clock: Clock): Map<string, NodeAttestor> {
  const out = new Map<string, NodeAttestor>();
  for (const name of config.nodeAttestors.keys()) {
    if (name === 'join_token') {
      out.set(name, createJoinTokenAttestor({ trustDomain: config.trustDomain, store: datastore, clock }));
    }
    if (name === 'k8s_psat' && config.k8sPsat !== undefined) {
      out.set(name, createK8sPsatAttestor({ trustDomain: config.trustDomain, config: config.k8sPsat }));
    }
  }
  return out;
}

/** Keeps the authorized-entries index in step with the datastore (rebuilt when entries change). */
function entryIndexCache(datastore: Datastore): () => EntryIndex {
  let generation = -1;
  let index: EntryIndex = buildEntryIndex([]);
  return () => {
    const current = datastore.entriesGeneration();
    if (current !== generation) {
      index = buildEntryIndex(datastore.listEntries());
      generation = current;
    }
    return index;
  };
}

/** The agent-record operations the Agent API needs, over the datastore. */
function agentStore(datastore: Datastore, trustDomain: string): AgentStore {
  return {
    getAttestedAgent: (id) => datastore.getAttestedAgent(id),
    listAttestedAgents: () => datastore.listAttestedAgents(),
    putAttestedAgent(agent) {
      if (datastore.getAttestedAgent(agent.spiffeId) === undefined) {
        datastore.createAttestedAgent(agent);
        return;
      }
      // Serials first: once they are written the new SVID is the only valid one.
      datastore.updateAgentSerials(agent.spiffeId, {
        serialNumber: agent.serialNumber,
        newSerialNumber: agent.newSerialNumber,
        expiresAt: agent.expiresAt,
        canReattest: agent.canReattest,
      });
      datastore.setAgentSelectors(agent.spiffeId, agent.selectors);
    },
    updateAgentSerials: (id, serials) => void datastore.updateAgentSerials(id, serials),
    banAgent: (id) => void datastore.banAgent(id),
    deleteAgent: (id) => void datastore.deleteAgent(id),
    createJoinToken: (token) => datastore.createJoinToken(token),
    createJoinTokenEntry(token, alias) {
      const agentId = `spiffe://${trustDomain}/spire/agent/join_token/${token}`;
      datastore.createEntry({ spiffeId: alias, parentId: agentId, selectors: [{ type: 'spiffe_id', value: agentId }] });
    },
  };
}

function bindAsync(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** The admin socket's owner, for the socket rules of common/unix-socket-file.ts. */
const ADMIN_SOCKET_OWNER = { role: 'server', dirMode: 0o700 } as const;

/**
 * The config field each configured file path comes from, so a failure caused by one of them
 * names its setting (`config: server.data_dir: …`).
 */
function pathFields(config: ServerConfig): Array<{ field: string; path: string }> {
  const upstream = 'plugins.UpstreamAuthority.disk.plugin_data';
  const defaultDatastore = config.datastorePath === resolve(config.dataDir, 'datastore.sqlite3');
  return [
    { field: 'server.socket_path', path: config.socketPath },
    { field: defaultDatastore ? 'server.data_dir' : 'plugins.DataStore.sql.plugin_data.connection_string', path: config.datastorePath },
    ...(config.upstream === undefined
      ? []
      : [
          { field: `${upstream}.cert_file_path`, path: config.upstream.certPath },
          { field: `${upstream}.key_file_path`, path: config.upstream.keyPath },
          ...(config.upstream.bundlePath === undefined ? [] : [{ field: `${upstream}.bundle_file_path`, path: config.upstream.bundlePath }]),
        ]),
    // Last: the CA's files live below it, and the first matching entry wins.
    { field: 'server.data_dir', path: config.dataDir },
  ];
}

/** Names the config field behind a path failure (see {@link pathFields}); other errors pass unchanged. */
async function explainPathError(err: unknown, config: ServerConfig): Promise<unknown> {
  const fields = pathFields(config);
  if (err instanceof PathError) {
    const match = fields.find((f) => f.path === err.path);
    return match === undefined ? err : new ApiError(Code.INVALID_ARGUMENT, `config: ${match.field}: ${err.detail}`);
  }
  const errPath = (err as NodeJS.ErrnoException | undefined)?.path;
  if (typeof errPath !== 'string') return err;
  const match = fields.find((f) => errPath === f.path || errPath.startsWith(`${f.path}/`));
  return match === undefined ? err : configPathError(err, match.field, match.path, match.path === config.dataDir ? 'directory' : 'read');
}

/** Creates data_dir (0700) and checks it is writable now rather than at the first CA write. */
async function prepareDataDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await access(dataDir, constants.W_OK | constants.X_OK);
}

/** Opens the datastore and CA, then starts both listeners. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  try {
    // First, before any file is touched: a server already serving on this socket_path may
    // share data_dir with this one.
    await claimSocketPath(config.socketPath, ADMIN_SOCKET_OWNER);
    await withConfigPath('server.data_dir', config.dataDir, 'directory', () => prepareDataDir(config.dataDir));
    if (config.datastorePath !== ':memory:') await checkWritableFile(config.datastorePath, 'datastore');
  } catch (err) {
    throw await explainPathError(err, config);
  }
  const datastore = openDatastore({ path: config.datastorePath, trustDomain: config.trustDomain, clock });
  let ca: CertificateAuthority;
  try {
    ca = await openCertificateAuthority({
      dataDir: config.dataDir,
      trustDomain: config.trustDomain,
      clock,
      caTtlMs: config.caTtlMs,
      defaultX509SvidTtlMs: config.defaultX509SvidTtlMs,
      defaultJwtSvidTtlMs: config.defaultJwtSvidTtlMs,
      caKeyType: config.caKeyType,
      jwtKeyType: config.jwtKeyType,
      ...(config.jwtIssuer === undefined ? {} : { jwtIssuer: config.jwtIssuer }),
      caSubject: {
        country: config.caSubject.country,
        organization: config.caSubject.organization,
        ...(config.caSubject.commonName === '' ? {} : { commonName: config.caSubject.commonName }),
      },
      ...(config.upstream === undefined
        ? {}
        : { upstream: { certPath: config.upstream.certPath, keyPath: config.upstream.keyPath, ...(config.upstream.bundlePath === undefined ? {} : { bundlePath: config.upstream.bundlePath }) } }),
    });
  } catch (err) {
    datastore.close();
    throw await explainPathError(err, config);
  }

  // TLS material: roots = our bundle (to verify agent SVIDs), identity = our server SVID.
  const tls = new MemoryCertificateProvider();
  let identity: ServerIdentity = ca.issueServerIdentity();
  const publishRoots = (): void => tls.setRoots(certificatesToPem(ca.bundle().x509Authorities));
  publishRoots();
  tls.setIdentity(identity.certChainPem, identity.keyPem);

  const index = entryIndexCache(datastore);
  const authorizedFor = (agent: AttestedAgent): RegistrationEntry[] =>
    authorizedEntries(index(), agent.spiffeId, agent.selectors);

  const tlsCallers = tlsCallerResolver({
    trustDomain: config.trustDomain,
    clock,
    agents: {
      getAttestedAgent: (id) => datastore.getAttestedAgent(id),
      promoteNewSerial(id, expiresAt) {
        const agent = datastore.getAttestedAgent(id);
        if (agent === undefined || agent.newSerialNumber === '') return;
        datastore.updateAgentSerials(id, { serialNumber: agent.newSerialNumber, newSerialNumber: '', expiresAt });
      },
    },
  });

  const signWorkloadJwt = (spiffeId: string, audience: readonly string[], ttlSeconds: number) =>
    ca.signJwtSvid({ spiffeId, audience, ...(ttlSeconds > 0 ? { ttlMs: ttlSeconds * 1000 } : {}) });

  let serving = true;
  const buildServer = (callers: CallerResolver): Server => {
    const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
    server.addService(
      AgentService,
      createAgentService({
        trustDomain: config.trustDomain,
        clock,
        logger,
        callers,
        store: agentStore(datastore, config.trustDomain),
        nodeAttestors: nodeAttestors(config, datastore, clock),
        signer: {
          signAgentSvid(csr, agentId) {
            const svid = ca.signX509SvidFromCsr({ csrDer: csr, spiffeId: agentId, ttlMs: config.agentTtlMs });
            return { certChain: svid.certChain, expiresAt: svid.expiresAt, serialNumber: svid.serialNumber };
          },
        },
      }),
    );
    server.addService(
      EntryService,
      createEntryService({
        logger,
        callers,
        authorizedEntries: authorizedFor,
        store: {
          batchCreateEntries: (inputs) => datastore.batchCreateEntries(inputs),
          batchUpdateEntries: (items) => datastore.batchUpdateEntries(items),
          deleteEntry: (id) => void datastore.deleteEntry(id),
          getEntry: (id) => datastore.getEntry(id),
          listEntries: (filter) => datastore.listEntries(filter),
        },
      }),
    );
    server.addService(
      SvidService,
      createSvidService({
        logger,
        callers,
        authorizedEntryMap: (agent) => new Map(authorizedFor(agent).map((e) => [e.id, e])),
        signer: {
          signX509SvidFromCsr(csr, spiffeId, ttlSeconds, dnsNames) {
            const svid = ca.signX509SvidFromCsr({ csrDer: csr, spiffeId, dnsNames, ...(ttlSeconds > 0 ? { ttlMs: ttlSeconds * 1000 } : {}) });
            return { certChain: svid.certChain, expiresAt: svid.expiresAt };
          },
          signJwtSvid: signWorkloadJwt,
        },
        minter: {
          trustDomain: config.trustDomain,
          signX509SvidForKey: ({ spiffeId, publicKey, ttlSeconds, dnsNames, subject }) => {
            const svid = ca.signX509Svid({ spiffeId, publicKey, dnsNames, ...(subject ? { subject } : {}), ...(ttlSeconds > 0 ? { ttlMs: ttlSeconds * 1000 } : {}) });
            return { certChain: svid.certChain, expiresAt: svid.expiresAt };
          },
          signJwtSvid: signWorkloadJwt,
        },
      }),
    );
    server.addService(
      BundleService,
      createBundleService({
        trustDomain: config.trustDomain,
        logger,
        callers,
        store: {
          getFederatedBundle: (td) => datastore.getFederatedBundle(td),
          listFederatedBundles: () => datastore.listFederatedBundles(),
          setFederatedBundle: (b) => datastore.setFederatedBundle(b),
          deleteFederatedBundle: (td) => datastore.deleteFederatedBundle(td),
        },
        ownBundle: () => {
          const b = ca.bundle();
          return { ...b, trustDomain: config.trustDomain };
        },
      }),
    );
    server.addService(HealthService, createHealthService(logger, () => serving));
    return server;
  };

  const tlsServer = buildServer(tlsCallers);
  const adminServer = buildServer(adminSocketResolver);
  let port: number;
  let adminSocket: SocketFileId;
  try {
    port = await bindAsync(
      tlsServer,
      `${config.bindAddress.includes(':') ? `[${config.bindAddress}]` : config.bindAddress}:${config.bindPort}`,
      experimental.createCertificateProviderServerCredentials(tls, tls, false),
    );
    // Refuses a socket another server serves on; replaces only a stale one; the socket
    // appears atomically with mode 0600 (see common/unix-socket-file.ts).
    await claimSocketPath(config.socketPath, ADMIN_SOCKET_OWNER);
    adminSocket = await publishSocket(config.socketPath, {
      ...ADMIN_SOCKET_OWNER,
      mode: 0o600,
      bind: async (tempPath) => void (await bindAsync(adminServer, `unix://${tempPath}`, ServerCredentials.createInsecure())),
      unbind: async () => adminServer.forceShutdown(),
    });
  } catch (err) {
    tlsServer.forceShutdown();
    adminServer.forceShutdown();
    datastore.close();
    throw await explainPathError(err, config);
  }

  // Rotation: CA steps when due, our TLS identity at half-life, expired join tokens pruned.
  const tickMs = Math.max(200, Math.min(5_000, Math.floor(config.caTtlMs / 20), Math.floor(config.defaultX509SvidTtlMs / 10)));
  let rotating = false;
  const tick = async (): Promise<void> => {
    if (rotating) return;
    rotating = true;
    try {
      const result = await ca.maybeRotate();
      if (result.bundleChanged) {
        publishRoots();
        logger.info({ sequence_number: ca.bundle().sequenceNumber }, 'bundle changed');
      }
      const nowSeconds = clock.now() / 1000;
      if (result.x509CaActivated || nowSeconds >= identityRenewAt) {
        identity = ca.issueServerIdentity();
        identityRenewAt = halfLife(identity, nowSeconds);
        tls.setIdentity(identity.certChainPem, identity.keyPem);
        logger.info({ spiffe_id: identity.spiffeId, expires_at: identity.expiresAt }, 'server SVID rotated');
      }
      // Keep expired tokens for an hour so their use is reported as "expired", not "unknown".
      datastore.pruneJoinTokens(Math.floor(nowSeconds) - 3600);
    } catch (err) {
      logger.error({ error: err instanceof Error ? err.message : String(err) }, 'rotation failed');
    } finally {
      rotating = false;
    }
  };
  const halfLife = (id: ServerIdentity, nowSeconds: number): number => nowSeconds + (id.expiresAt - nowSeconds) / 2;
  let identityRenewAt = halfLife(identity, clock.now() / 1000);
  const timer = setInterval(() => void tick(), tickMs);
  timer.unref();

  logger.info(
    { trust_domain: config.trustDomain, address: `${config.bindAddress}:${port}`, admin_socket: config.socketPath },
    'server started',
  );

  return {
    port,
    ca,
    datastore,
    async stop() {
      serving = false;
      clearInterval(timer);
      // Give in-flight unary calls a moment, then cut long-lived streams.
      const graceful = Promise.all([
        new Promise<void>((resolve) => tlsServer.tryShutdown(() => resolve())),
        new Promise<void>((resolve) => adminServer.tryShutdown(() => resolve())),
      ]);
      await Promise.race([graceful, new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref())]);
      tlsServer.forceShutdown();
      adminServer.forceShutdown();
      // Only our own socket: another server may have replaced it (and libuv already removed
      // the temporary name it was bound under).
      await removeSocketIfOwned(config.socketPath, adminSocket);
      datastore.close();
      logger.info({}, 'server stopped');
    },
  };
}
