/**
 * The agent's configuration in SPIRE's `agent.conf` vocabulary (HCL or JSON):
 *
 *   agent { trust_domain, server_address, server_port, socket_path, data_dir, log_level,
 *           trust_bundle_path, trust_bundle_format, insecure_bootstrap, join_token,
 *           x509_svid_cache_max_size, jwt_svid_cache_max_size, admin_socket_path, authorized_delegates,
 *           experimental { sync_interval, workload_api_limits } }
 *   plugins { NodeAttestor "join_token" {…}, KeyManager "disk"|"memory" {…},
 *             WorkloadAttestor "unix" { plugin_data { discover_workload_path, workload_size_limit } } }
 *
 * Parsing is pure: a config tree in, a validated config out, errors naming the field.
 */
import { resolve } from 'node:path';
import { ConfigReader } from '../common/config-reader.ts';
import { socketPathLengthProblem } from '../common/unix-socket-file.ts';
import type { ConfigTree } from '../common/config-file.ts';
import { parseTrustDomain } from '../common/spiffe-id.ts';
import { normaliseLogLevel } from '../common/logger.ts';
import type { K8sAttestorOptions } from '../attestors/workload/k8s/options.ts';
import { parseK8sPsatAgentConfig, type K8sPsatAgentConfig } from '../attestors/node/k8s-psat.ts';
import { DEFAULT_CALLER_LIMITS, type CallerLimits } from './workload-api/caller-limits.ts';
import { parseAdminConfig, type AdminConfig } from './admin/admin-config.ts';
import { DEFAULT_SDS_CONFIG, type SdsConfig } from './sds/sds-config.ts';

export type TrustBundleSource =
  | { kind: 'path'; path: string; format: 'pem' | 'spiffe' }
  | { kind: 'insecure' };

export interface UnixAttestorConfig {
  discoverWorkloadPath: boolean;
  workloadSizeLimit: number;
}

/** plugin_data of `WorkloadAttestor "k8s"`, in SPIRE's names (see README). */
export type K8sWorkloadAttestorConfig = Omit<K8sAttestorOptions, 'logger' | 'procRoot' | 'clock' | 'transport' | 'baseUrl' | 'env' | 'kubeletTimeoutMs'>;

/** Reads `WorkloadAttestor "k8s" { plugin_data { … } }`; relative paths resolve against `cwd`. */
export function parseK8sWorkloadAttestorConfig(data: ConfigReader, cwd: string): K8sWorkloadAttestorConfig {
  const path = (key: string): string | undefined => {
    const v = data.optionalString(key);
    return v === undefined || v === '' ? undefined : resolve(cwd, v);
  };
  const out: K8sWorkloadAttestorConfig = {
    kubeletSecurePort: data.int('kubelet_secure_port', 0, { min: 0, max: 65535 }),
    skipKubeletVerification: data.bool('skip_kubelet_verification', false),
    useAnonymousAuthentication: data.bool('use_anonymous_authentication', false),
    maxPollAttempts: data.int('max_poll_attempts', 0, { min: 0 }),
    pollRetryIntervalMs: data.duration('poll_retry_interval', 500),
    disableContainerSelectors: data.bool('disable_container_selectors', false),
  };
  const optional: Array<[keyof K8sWorkloadAttestorConfig, string | undefined]> = [
    ['kubeletCaPath', path('kubelet_ca_path')],
    ['tokenPath', path('token_path')],
    ['certificatePath', path('certificate_path')],
    ['privateKeyPath', path('private_key_path')],
    ['nodeNameEnv', data.optionalString('node_name_env')],
    ['nodeName', data.optionalString('node_name')],
  ];
  for (const [key, value] of optional) if (value !== undefined && value !== '') (out as Record<string, unknown>)[key] = value;
  // Not a SPIRE key: how long the shared kubelet pod list answers known containers (default in options.ts).
  const podListMaxAgeMs = data.duration('pod_list_max_age', 0);
  if (podListMaxAgeMs > 0) out.podListMaxAgeMs = podListMaxAgeMs;
  // Accepted for helm-rendered configs: the locator is always SPIRE's new one, and its
  // decisions are logged at debug level anyway.
  data.bool('use_new_container_locator', true);
  data.bool('verbose_container_locator_logs', false);
  if ((out.certificatePath === undefined) !== (out.privateKeyPath === undefined)) {
    data.fail('certificate_path', 'certificate_path and private_key_path must be set together');
  }
  data.done();
  return out;
}

/** `health_checks { … }`: the HTTP liveness/readiness listener (SPIRE's names and defaults). */
export interface HealthChecksConfig {
  listenerEnabled: boolean;
  bindAddress: string;
  bindPort: number;
  livePath: string;
  readyPath: string;
}

/** `telemetry { Prometheus { host, port } }`. */
export interface TelemetryConfig {
  prometheus: { host: string; port: number } | undefined;
  /** Sinks configured but not supported (the agent logs a warning). */
  ignoredSinks: readonly string[];
}

export interface AgentConfig {
  trustDomain: string;
  serverAddress: string;
  serverPort: number;
  socketPath: string;
  dataDir: string;
  logLevel: string;
  trustBundle: TrustBundleSource;
  /** Node attestor type: `join_token` for now. */
  nodeAttestor: string;
  joinToken: string | undefined;
  /** `NodeAttestor "k8s_psat"` plugin_data, when that attestor is configured. */
  k8sPsat?: K8sPsatAgentConfig;
  /** `disk` keeps the agent key in data_dir; `memory` re-attests after a restart. */
  keyManager: 'disk' | 'memory';
  x509SvidCacheMaxSize: number;
  jwtSvidCacheMaxSize: number;
  syncIntervalMs: number;
  /** `experimental { workload_api_limits { … } }`: per-caller limits of the Workload API. */
  workloadApiLimits: CallerLimits;
  /** `sds { … }`: resource names and validation of the Envoy SDS service on the Workload API socket. */
  sds: SdsConfig;
  workloadAttestors: { unix?: UnixAttestorConfig; k8s?: K8sWorkloadAttestorConfig };
  /** `admin_socket_path` and `authorized_delegates`: the admin API (Delegated Identity, Debug). */
  admin: AdminConfig;
  healthChecks: HealthChecksConfig;
  telemetry: TelemetryConfig;
  /**
   * SPIRE settings this agent accepts (so a helm-rendered config starts) but does not act on,
   * each as a sentence the agent logs at start.
   */
  warnings: string[];
}

export const AGENT_DEFAULTS = {
  socketPath: '/tmp/spire-agent/public/api.sock',
  dataDir: '.',
  logLevel: 'INFO',
  x509SvidCacheMaxSize: 1000,
  jwtSvidCacheMaxSize: 1000,
  syncIntervalMs: 5_000,
} as const;

const AGENT_KEYS: readonly string[] = [
  'trust_domain', 'server_address', 'server_port', 'socket_path', 'data_dir', 'log_level', 'log_format',
  'trust_bundle_path', 'trust_bundle_format', 'trust_bundle_url', 'insecure_bootstrap', 'join_token',
  'x509_svid_cache_max_size', 'jwt_svid_cache_max_size', 'workload_x509_svid_key_type', 'experimental',
  'rebootstrap_mode', 'rebootstrap_delay', 'availability_target', 'admin_socket_path', 'authorized_delegates',
  'sds', 'allow_unauthenticated_verifiers', 'allowed_foreign_jwt_claims',
];

/** `workload_api_limits { connections_per_process, connections_per_pod, calls_per_caller, streams_per_connection }`. */
function parseWorkloadApiLimits(block: ConfigReader): CallerLimits {
  const d = DEFAULT_CALLER_LIMITS;
  const limits: CallerLimits = {
    connectionsPerProcess: block.int('connections_per_process', d.connectionsPerProcess, { min: 1 }),
    connectionsPerPod: block.int('connections_per_pod', d.connectionsPerPod, { min: 1 }),
    callsPerCaller: block.int('calls_per_caller', d.callsPerCaller, { min: 1 }),
    streamsPerConnection: block.int('streams_per_connection', d.streamsPerConnection, { min: 1, max: 2 ** 31 - 1 }),
  };
  block.done();
  return limits;
}

/**
 * SPIRE agent settings that are accepted and validated, but whose feature this agent does not
 * have; each produces a start-up warning instead of failing a helm-rendered config.
 */
function readAcceptedExtras(agent: ConfigReader, experimental: ConfigReader, warnings: string[]): void {
  const mode = agent.string('rebootstrap_mode', 'never');
  if (!['never', 'auto', 'always'].includes(mode)) agent.fail('rebootstrap_mode', `must be "never", "auto" or "always" (got "${mode}")`);
  if (mode !== 'never') warnings.push(`agent.rebootstrap_mode "${mode}" is not supported; the agent behaves as "never"`);
  if (agent.has('rebootstrap_delay')) agent.duration('rebootstrap_delay', 600_000);
  if (agent.has('availability_target')) {
    agent.duration('availability_target', 0);
    warnings.push('agent.availability_target is not supported; SVIDs rotate at 45–55 % of their lifetime');
  }
  if (agent.bool('allow_unauthenticated_verifiers', false)) warnings.push('agent.allow_unauthenticated_verifiers is not supported; callers without an identity get PermissionDenied');
  if (agent.stringList('allowed_foreign_jwt_claims').length > 0) warnings.push('agent.allowed_foreign_jwt_claims is not supported; foreign JWT-SVIDs keep only sub, aud and exp');
  if (agent.has('trust_bundle_url')) agent.fail('trust_bundle_url', 'is not supported; use trust_bundle_path (a PEM or SPIFFE bundle file, e.g. from a ConfigMap)');
  if (experimental.bool('require_pq_kem', false)) warnings.push('agent.experimental.require_pq_kem is not supported');
  experimental.stringList('feature_flags');
  if (experimental.has('broker')) experimental.fail('broker', 'the broker API is not supported; remove this setting');
}

/** `sds { default_svid_name, default_bundle_name, default_all_bundles_name, disable_spiffe_cert_validation }`, SPIRE's defaults. */
function parseSds(block: ConfigReader, warnings: string[]): SdsConfig {
  const d = DEFAULT_SDS_CONFIG;
  const sds: SdsConfig = {
    defaultSvidName: block.string('default_svid_name', d.defaultSvidName),
    defaultBundleName: block.string('default_bundle_name', d.defaultBundleName),
    defaultAllBundlesName: block.string('default_all_bundles_name', d.defaultAllBundlesName),
    disableSpiffeCertValidation: block.bool('disable_spiffe_cert_validation', d.disableSpiffeCertValidation),
  };
  block.done();
  if (sds.defaultAllBundlesName === sds.defaultBundleName) {
    // As SPIRE: a warning, and the bundle name wins when a client asks for it.
    warnings.push(`agent.sds: default_bundle_name and default_all_bundles_name are both "${sds.defaultBundleName}": default_all_bundles_name is ignored; configure distinct values`);
  }
  return sds;
}

function pluginData(block: ConfigReader): ConfigReader {
  const data = block.block('plugin_data');
  block.done(['plugin_data', 'enabled', 'plugin_cmd', 'plugin_checksum']);
  return data;
}

function parseHealthChecks(block: ConfigReader): HealthChecksConfig {
  const out: HealthChecksConfig = {
    listenerEnabled: block.bool('listener_enabled', false),
    bindAddress: block.string('bind_address', 'localhost'),
    bindPort: block.int('bind_port', 80, { min: 0, max: 65535 }),
    livePath: block.string('live_path', '/live'),
    readyPath: block.string('ready_path', '/ready'),
  };
  for (const key of ['live_path', 'ready_path'] as const) {
    const path = key === 'live_path' ? out.livePath : out.readyPath;
    if (!path.startsWith('/')) block.fail(key, `must start with "/" (got "${path}")`);
  }
  if (out.livePath === out.readyPath) block.fail('ready_path', 'must differ from live_path');
  block.done();
  return out;
}

/** Telemetry sinks SPIRE offers that this agent does not export to. */
const UNSUPPORTED_SINKS: readonly string[] = ['DogStatsd', 'Statsd', 'M3', 'InMem'];

function parseTelemetry(block: ConfigReader): TelemetryConfig {
  let prometheus: TelemetryConfig['prometheus'];
  if (block.has('Prometheus')) {
    const p = block.block('Prometheus');
    prometheus = { host: p.string('host', 'localhost'), port: p.int('port', 9988, { min: 0, max: 65535 }) };
    p.done();
  }
  // A helm-rendered config may name sinks we do not export to: start anyway, say so in the log.
  const ignored = UNSUPPORTED_SINKS.filter((sink) => block.has(sink));
  block.done(['Prometheus', ...UNSUPPORTED_SINKS, 'AllowedPrefixes', 'BlockedPrefixes', 'AllowedLabels', 'BlockedLabels', 'MetricPrefix', 'EnableHostnameLabel']);
  return { prometheus, ignoredSinks: ignored };
}

/** Overrides given on the command line (`run -joinToken …`). */
export interface AgentFlagOverrides {
  joinToken?: string;
  socketPath?: string;
}

/** Builds the agent config from a parsed file; relative paths resolve against `cwd`. */
export function parseAgentConfig(tree: ConfigTree, cwd = process.cwd(), overrides: AgentFlagOverrides = {}): AgentConfig {
  const root = new ConfigReader(tree, '');
  root.done(['agent', 'plugins', 'health_checks', 'telemetry']);
  const agent = root.block('agent');
  agent.done(AGENT_KEYS);
  const plugins = root.block('plugins');

  const trustDomain = agent.string('trust_domain');
  const td = parseTrustDomain(trustDomain);
  if (!td.ok) agent.fail('trust_domain', `${td.error} (example: "example.org")`);
  const serverAddress = agent.string('server_address');
  if (serverAddress.trim() === '') agent.fail('server_address', 'must not be empty');
  const serverPort = agent.int('server_port', -1, { min: 1, max: 65535 });
  if (serverPort === -1) agent.fail('server_port', 'is required (the SPIRE server port, usually 8081)');

  const logLevel = agent.string('log_level', AGENT_DEFAULTS.logLevel);
  if (normaliseLogLevel(logLevel) === undefined) agent.fail('log_level', `must be one of DEBUG, INFO, WARN, ERROR (got "${logLevel}")`);
  const warnings: string[] = [];
  const logFormat = agent.string('log_format', 'json').toLowerCase();
  if (logFormat !== 'json' && logFormat !== 'text') agent.fail('log_format', `must be "json" or "text" (got "${logFormat}")`);
  if (logFormat === 'text') warnings.push('agent.log_format "text" is not supported; logs are structured JSON');
  const keyType = agent.string('workload_x509_svid_key_type', 'ec-p256');
  if (keyType !== 'ec-p256') agent.fail('workload_x509_svid_key_type', `only "ec-p256" is supported (got "${keyType}")`);

  const insecure = agent.bool('insecure_bootstrap', false);
  const bundlePath = agent.optionalString('trust_bundle_path');
  const bundleFormat = agent.string('trust_bundle_format', 'pem');
  if (bundleFormat !== 'pem' && bundleFormat !== 'spiffe') agent.fail('trust_bundle_format', `must be "pem" or "spiffe" (got "${bundleFormat}")`);
  if (insecure && bundlePath !== undefined) {
    agent.fail('insecure_bootstrap', 'cannot be combined with trust_bundle_path: choose one way to trust the server');
  }
  if (!insecure && bundlePath === undefined) {
    agent.fail('trust_bundle_path', 'is required (a PEM bundle of the server CA, e.g. from `spiffe-server bundle show`), unless insecure_bootstrap = true');
  }
  const trustBundle: TrustBundleSource = insecure
    ? { kind: 'insecure' }
    : { kind: 'path', path: resolve(cwd, bundlePath as string), format: bundleFormat as 'pem' | 'spiffe' };

  const experimental = agent.block('experimental');
  const syncIntervalMs = experimental.duration('sync_interval', AGENT_DEFAULTS.syncIntervalMs);
  const workloadApiLimits = parseWorkloadApiLimits(experimental.block('workload_api_limits'));
  readAcceptedExtras(agent, experimental, warnings);
  experimental.done();
  const sds = parseSds(agent.block('sds'), warnings);

  const x509Max = agent.int('x509_svid_cache_max_size', AGENT_DEFAULTS.x509SvidCacheMaxSize);
  const jwtMax = agent.int('jwt_svid_cache_max_size', AGENT_DEFAULTS.jwtSvidCacheMaxSize);
  const socketPath = resolve(cwd, overrides.socketPath ?? agent.string('socket_path', AGENT_DEFAULTS.socketPath));

  const config: AgentConfig = {
    trustDomain,
    serverAddress,
    serverPort,
    socketPath,
    dataDir: resolve(cwd, agent.string('data_dir', AGENT_DEFAULTS.dataDir)),
    logLevel,
    trustBundle,
    nodeAttestor: '',
    joinToken: overrides.joinToken ?? agent.optionalString('join_token'),
    keyManager: 'disk',
    // SPIRE: values ≤ 0 mean the default.
    x509SvidCacheMaxSize: x509Max <= 0 ? AGENT_DEFAULTS.x509SvidCacheMaxSize : x509Max,
    jwtSvidCacheMaxSize: jwtMax <= 0 ? AGENT_DEFAULTS.jwtSvidCacheMaxSize : jwtMax,
    syncIntervalMs,
    workloadApiLimits,
    sds,
    workloadAttestors: {},
    admin: parseAdminConfig(agent, trustDomain, socketPath, cwd, warnings),
    healthChecks: parseHealthChecks(root.block('health_checks')),
    telemetry: parseTelemetry(root.block('telemetry')),
    warnings,
  };
  agent.done(AGENT_KEYS);
  const socketPathProblem = socketPathLengthProblem(config.socketPath);
  if (socketPathProblem !== undefined) agent.fail('socket_path', `"${config.socketPath}" ${socketPathProblem}`);

  const nodeAttestors = plugins.labelled('NodeAttestor');
  if (nodeAttestors.size !== 1) {
    plugins.fail('NodeAttestor', `exactly one node attestor is required (for example NodeAttestor "join_token" { plugin_data {} }), got ${nodeAttestors.size}`);
  }
  for (const [name, block] of nodeAttestors) {
    if (name === 'k8s_psat') config.k8sPsat = parseK8sPsatAgentConfig(pluginData(block), cwd);
    else if (name === 'join_token') pluginData(block).done();
    else plugins.fail(`NodeAttestor.${name}`, 'unsupported node attestor (supported: join_token, k8s_psat)');
    config.nodeAttestor = name;
  }
  if (config.nodeAttestor === 'join_token' && config.joinToken === undefined) {
    agent.fail('join_token', 'is required by the join_token node attestor (or pass -joinToken to run)');
  }

  for (const [name, block] of plugins.labelled('KeyManager')) {
    if (name !== 'disk' && name !== 'memory') plugins.fail(`KeyManager.${name}`, 'unsupported key manager (supported: disk, memory)');
    pluginData(block).done(['directory']);
    config.keyManager = name as 'disk' | 'memory';
  }

  for (const [name, block] of plugins.labelled('WorkloadAttestor')) {
    if (name === 'k8s') {
      config.workloadAttestors.k8s = parseK8sWorkloadAttestorConfig(pluginData(block), cwd);
      continue;
    }
    if (name !== 'unix') plugins.fail(`WorkloadAttestor.${name}`, 'unsupported workload attestor (supported: unix, k8s)');
    const data = pluginData(block);
    config.workloadAttestors.unix = {
      discoverWorkloadPath: data.bool('discover_workload_path', false),
      workloadSizeLimit: data.int('workload_size_limit', 0),
    };
    data.done();
  }
  plugins.done(['NodeAttestor', 'KeyManager', 'WorkloadAttestor']);
  if (Object.keys(config.workloadAttestors).length === 0) {
    plugins.fail('WorkloadAttestor', 'at least one workload attestor is required (for example WorkloadAttestor "unix" { plugin_data {} })');
  }
  return config;
}
