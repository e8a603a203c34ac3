/**
 * The server's configuration, in SPIRE's `server.conf` vocabulary (HCL or JSON):
 *
 *   server { trust_domain, bind_address, bind_port, socket_path, data_dir, log_level,
 *            ca_ttl, default_x509_svid_ttl, default_jwt_svid_ttl, agent_ttl, ca_subject {…},
 *            ca_key_type, jwt_key_type, jwt_issuer }
 *   plugins { DataStore "sql" {…}, NodeAttestor "join_token" {…}, KeyManager "disk" {…},
 *             UpstreamAuthority "disk" { plugin_data { cert_file_path, key_file_path, bundle_file_path } } }
 *
 * Parsing is pure (tree in, config out); reading the file lives in config-file.ts.
 */
import { resolve } from 'node:path';
import { ConfigReader } from '../common/config-reader.ts';
import { socketPathLengthProblem } from '../common/unix-socket-file.ts';
import type { ConfigTree } from '../common/config-file.ts';
import { parseTrustDomain } from '../common/spiffe-id.ts';
import { normaliseLogLevel } from '../common/logger.ts';
import { parseK8sPsatServerConfig, type K8sPsatServerConfig } from './node-attestors/k8s-psat-config.ts';
import { KEY_TYPES, isKeyType, type KeyType } from './ca/keys.ts';

export interface UpstreamDiskConfig {
  certPath: string;
  keyPath: string;
  bundlePath: string | undefined;
}

export interface ServerConfig {
  trustDomain: string;
  bindAddress: string;
  bindPort: number;
  /** The local admin API socket the CLI talks to. */
  socketPath: string;
  dataDir: string;
  logLevel: string;
  caTtlMs: number;
  defaultX509SvidTtlMs: number;
  defaultJwtSvidTtlMs: number;
  /** TTL of agent SVIDs issued by attestation and renewal. */
  agentTtlMs: number;
  caSubject: { country: string; organization: string; commonName: string };
  /** Key type of the X.509 CA (`ca_key_type`, default ec-p256). */
  caKeyType: KeyType;
  /** Key type of the JWT signing key (`jwt_key_type`, default `ca_key_type`). */
  jwtKeyType: KeyType;
  /** The `iss` claim of JWT-SVIDs (`jwt_issuer`); none when undefined. */
  jwtIssuer: string | undefined;
  /** Node attestors enabled by the plugins block, with their plugin_data. */
  nodeAttestors: Map<string, ConfigReader>;
  k8sPsat: K8sPsatServerConfig | undefined;
  upstream: UpstreamDiskConfig | undefined;
  /** The SQLite file; defaults to <data_dir>/datastore.sqlite3. */
  datastorePath: string;
}

export const SERVER_DEFAULTS = {
  bindAddress: '0.0.0.0',
  bindPort: 8081,
  socketPath: '/tmp/spire-server/private/api.sock',
  logLevel: 'INFO',
  caTtlMs: 24 * 3_600_000,
  defaultX509SvidTtlMs: 3_600_000,
  defaultJwtSvidTtlMs: 5 * 60_000,
} as const;

/** Keys of the `server` block. */
const SERVER_KEYS: readonly string[] = [
  'trust_domain', 'bind_address', 'bind_port', 'socket_path', 'data_dir', 'log_level', 'log_format',
  'ca_ttl', 'default_x509_svid_ttl', 'default_jwt_svid_ttl', 'agent_ttl', 'ca_subject', 'ca_key_type',
  'jwt_key_type', 'jwt_issuer',
];

/** Node attestors this server implements. */
export const SUPPORTED_NODE_ATTESTORS: readonly string[] = ['join_token', 'k8s_psat'];

/**
 * `jwt_issuer`: absent or empty → no `iss` claim; otherwise a URL with a host, as SPIRE checks it
 * (STS and other OIDC relying parties match it against the discovery document's `issuer`).
 */
function jwtIssuerOf(server: ConfigReader): string | undefined {
  const issuer = server.string('jwt_issuer', '');
  if (issuer === '') return undefined;
  let url: URL | undefined;
  try {
    url = new URL(issuer);
  } catch {
    url = undefined;
  }
  if (url === undefined || url.host === '') server.fail('jwt_issuer', `must be an absolute URL with a host, e.g. "https://oidc.example.org" (got "${issuer}")`);
  return issuer;
}

function pluginData(reader: ConfigReader): ConfigReader {
  const data = reader.block('plugin_data');
  reader.done(['plugin_data', 'enabled', 'plugin_cmd', 'plugin_checksum']);
  return data;
}

/** Builds the server config from a parsed file; relative paths resolve against `cwd`. */
export function parseServerConfig(tree: ConfigTree, cwd = process.cwd()): ServerConfig {
  const root = new ConfigReader(tree, '');
  root.done(['server', 'plugins', 'health_checks', 'telemetry']);
  const server = root.block('server');
  const plugins = root.block('plugins');
  // Unknown keys first: a typo should be reported as a typo, not as a missing field.
  server.done(SERVER_KEYS);

  const trustDomain = server.string('trust_domain');
  const td = parseTrustDomain(trustDomain);
  if (!td.ok) server.fail('trust_domain', `${td.error} (example: "example.org")`);

  const logLevel = server.string('log_level', SERVER_DEFAULTS.logLevel);
  if (normaliseLogLevel(logLevel) === undefined) server.fail('log_level', `must be one of DEBUG, INFO, WARN, ERROR (got "${logLevel}")`);

  const logFormat = server.string('log_format', 'json').toLowerCase();
  if (logFormat !== 'json') server.fail('log_format', `only "json" is supported: logs are structured JSON (got "${logFormat}")`);
  const keyType = (key: string, fallback: KeyType): KeyType => {
    const v = server.string(key, fallback);
    if (!isKeyType(v)) server.fail(key, `must be one of ${KEY_TYPES.map((t) => `"${t}"`).join(', ')} (got "${v}")`);
    return v as KeyType;
  };
  const caKeyType = keyType('ca_key_type', 'ec-p256');
  const jwtKeyType = keyType('jwt_key_type', caKeyType);
  const jwtIssuer = jwtIssuerOf(server);
  const dataDir = resolve(cwd, server.string('data_dir'));
  const subject = server.block('ca_subject');
  const first = (key: string, fallback: string): string => subject.stringList(key)[0] ?? fallback;
  const caSubject = {
    country: first('country', 'US'),
    organization: first('organization', 'SPIFFE'),
    commonName: subject.string('common_name', ''),
  };
  subject.done();

  const defaultX509SvidTtlMs = server.duration('default_x509_svid_ttl', SERVER_DEFAULTS.defaultX509SvidTtlMs);
  const config: Omit<ServerConfig, 'nodeAttestors' | 'k8sPsat' | 'upstream' | 'datastorePath'> = {
    trustDomain,
    bindAddress: server.string('bind_address', SERVER_DEFAULTS.bindAddress),
    bindPort: server.int('bind_port', SERVER_DEFAULTS.bindPort, { min: 0, max: 65535 }),
    socketPath: resolve(cwd, server.string('socket_path', SERVER_DEFAULTS.socketPath)),
    dataDir,
    logLevel,
    caTtlMs: server.duration('ca_ttl', SERVER_DEFAULTS.caTtlMs),
    defaultX509SvidTtlMs,
    defaultJwtSvidTtlMs: server.duration('default_jwt_svid_ttl', SERVER_DEFAULTS.defaultJwtSvidTtlMs),
    agentTtlMs: server.duration('agent_ttl', defaultX509SvidTtlMs),
    caSubject,
    caKeyType,
    jwtKeyType,
    jwtIssuer,
  };
  server.done();
  const socketPathProblem = socketPathLengthProblem(config.socketPath);
  if (socketPathProblem !== undefined) server.fail('socket_path', `"${config.socketPath}" ${socketPathProblem}`);

  const nodeAttestors = new Map<string, ConfigReader>();
  let k8sPsat: K8sPsatServerConfig | undefined;
  for (const [name, block] of plugins.labelled('NodeAttestor')) {
    if (!SUPPORTED_NODE_ATTESTORS.includes(name)) {
      plugins.fail(`NodeAttestor.${name}`, `unsupported node attestor (supported: ${SUPPORTED_NODE_ATTESTORS.join(', ')})`);
    }
    const data = pluginData(block);
    nodeAttestors.set(name, data);
    if (name === 'k8s_psat') k8sPsat = parseK8sPsatServerConfig(data, cwd);
  }

  let upstream: UpstreamDiskConfig | undefined;
  for (const [name, block] of plugins.labelled('UpstreamAuthority')) {
    if (name !== 'disk') plugins.fail(`UpstreamAuthority.${name}`, 'unsupported upstream authority (supported: disk)');
    const data = pluginData(block);
    upstream = {
      certPath: resolve(cwd, data.string('cert_file_path')),
      keyPath: resolve(cwd, data.string('key_file_path')),
      bundlePath: data.has('bundle_file_path') ? resolve(cwd, data.string('bundle_file_path')) : undefined,
    };
    data.done();
  }

  let datastorePath = resolve(dataDir, 'datastore.sqlite3');
  for (const [name, block] of plugins.labelled('DataStore')) {
    if (name !== 'sql') plugins.fail(`DataStore.${name}`, 'unsupported datastore (supported: sql with database_type "sqlite3")');
    const data = pluginData(block);
    const type = data.string('database_type', 'sqlite3');
    if (type !== 'sqlite3') data.fail('database_type', `only "sqlite3" is supported (got "${type}")`);
    if (data.has('connection_string')) datastorePath = resolve(cwd, data.string('connection_string'));
    data.done();
  }
  for (const [name, block] of plugins.labelled('KeyManager')) {
    if (name !== 'disk' && name !== 'memory') plugins.fail(`KeyManager.${name}`, 'unsupported key manager (supported: disk, memory)');
    pluginData(block).done(['keys_path']);
  }
  plugins.done(['NodeAttestor', 'UpstreamAuthority', 'DataStore', 'KeyManager']);
  if (nodeAttestors.size === 0) {
    plugins.fail('NodeAttestor', 'at least one node attestor is required (for example NodeAttestor "join_token" { plugin_data {} })');
  }
  return { ...config, nodeAttestors, k8sPsat, upstream, datastorePath };
}
