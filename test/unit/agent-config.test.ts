import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/common/config-file.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { ApiError } from '../../src/common/errors.ts';

const base = `
agent {
  data_dir = "./agent-data"
  log_level = "DEBUG"
  server_address = "spire-server"
  server_port = "8081"
  socket_path = "/run/spire/agent-sockets/spire-agent.sock"
  trust_bundle_path = "/run/spire/bundle/bundle.crt"
  trust_domain = "example.org"
  join_token = "abc"
  experimental {
    sync_interval = "2s"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
`;

async function error(text: string): Promise<string> {
  try {
    parseAgentConfig(await parseConfigText('agent.conf', text), '/w');
  } catch (err) {
    if (err instanceof ApiError) return err.message;
    throw err;
  }
  return 'no error';
}

describe('parseAgentConfig', () => {
  it('reads experimental.workload_api_limits', async () => {
    const text = base.replace('sync_interval = "2s"', 'sync_interval = "2s"\n workload_api_limits {\n connections_per_pod = 500\n calls_per_caller = 20000\n }');
    const c = parseAgentConfig(await parseConfigText('agent.conf', text), '/w');
    expect(c.workloadApiLimits).toEqual({ connectionsPerProcess: 32, connectionsPerPod: 500, callsPerCaller: 20_000, streamsPerConnection: 100 });
  });

  it('reads SPIRE agent.conf', async () => {
    const c = parseAgentConfig(await parseConfigText('agent.conf', base), '/w');
    expect(c).toMatchObject({
      trustDomain: 'example.org',
      serverAddress: 'spire-server',
      serverPort: 8081,
      socketPath: '/run/spire/agent-sockets/spire-agent.sock',
      dataDir: '/w/agent-data',
      trustBundle: { kind: 'path', path: '/run/spire/bundle/bundle.crt', format: 'pem' },
      nodeAttestor: 'join_token',
      joinToken: 'abc',
      keyManager: 'memory',
      syncIntervalMs: 2000,
      workloadApiLimits: { connectionsPerProcess: 32, connectionsPerPod: 64, callsPerCaller: 1000, streamsPerConnection: 100 },
      x509SvidCacheMaxSize: 1000,
      workloadAttestors: { unix: { discoverWorkloadPath: true, workloadSizeLimit: 0 } },
    });
  });

  it('reads the k8s workload attestor\'s plugin_data in SPIRE\'s names', async () => {
    const text = base.replace('WorkloadAttestor "unix"', `WorkloadAttestor "k8s" {
    plugin_data {
      kubelet_secure_port = 10250
      kubelet_ca_path = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
      node_name_env = "MY_NODE_NAME"
      poll_retry_interval = "250ms"
      max_poll_attempts = 120
      disable_container_selectors = true
    }
  }
  WorkloadAttestor "unix"`);
    const c = parseAgentConfig(await parseConfigText('agent.conf', text), '/w');
    expect(c.workloadAttestors.k8s).toEqual({
      kubeletSecurePort: 10250,
      kubeletCaPath: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
      nodeNameEnv: 'MY_NODE_NAME',
      pollRetryIntervalMs: 250,
      maxPollAttempts: 120,
      disableContainerSelectors: true,
      skipKubeletVerification: false,
      useAnonymousAuthentication: false,
    });
  });

  it('reads pod_list_max_age (not a SPIRE key): how long the kubelet pod list answers known containers', async () => {
    const text = base.replace('WorkloadAttestor "unix"', 'WorkloadAttestor "k8s" {\n plugin_data {\n pod_list_max_age = "30s"\n }\n }\n WorkloadAttestor "unix"');
    const c = parseAgentConfig(await parseConfigText('agent.conf', text), '/w');
    expect(c.workloadAttestors.k8s?.podListMaxAgeMs).toBe(30_000);
    expect(await error(text.replace('"30s"', '"0s"'))).toBe('config: plugins.WorkloadAttestor.k8s.plugin_data.pod_list_max_age: must be greater than zero');
  });

  it('rejects an unknown k8s plugin_data key with a suggestion', async () => {
    const text = base.replace('WorkloadAttestor "unix"', 'WorkloadAttestor "k8s" {\n plugin_data {\n kubelet_ca_pth = "x"\n }\n }\n WorkloadAttestor "unix"');
    expect(await error(text)).toBe('config: plugins.WorkloadAttestor.k8s.plugin_data.kubelet_ca_pth: unknown key (did you mean "kubelet_ca_path"?)');
  });

  it('takes the join token and socket path from flags over the file', async () => {
    const c = parseAgentConfig(await parseConfigText('agent.conf', base), '/w', { joinToken: 'flag', socketPath: '/tmp/x.sock' });
    expect(c.joinToken).toBe('flag');
    expect(c.socketPath).toBe('/tmp/x.sock');
  });

  const bad: Array<[string, [string, string], string]> = [
    ['a misspelt key', ['server_port = "8081"', 'server_prot = "8081"'], 'config: agent.server_prot: unknown key (did you mean "server_port"?)'],
    ['a missing trust bundle', ['trust_bundle_path = "/run/spire/bundle/bundle.crt"', ''], 'config: agent.trust_bundle_path: is required (a PEM bundle of the server CA, e.g. from `spiffe-server bundle show`), unless insecure_bootstrap = true'],
    ['both bootstrap modes', ['trust_domain = "example.org"', 'trust_domain = "example.org"\n insecure_bootstrap = true'], 'config: agent.insecure_bootstrap: cannot be combined with trust_bundle_path: choose one way to trust the server'],
    ['a bad port', ['server_port = "8081"', 'server_port = "eighty"'], 'config: agent.server_port: must be an integer (got "eighty")'],
    ['a missing join token', ['join_token = "abc"', ''], 'config: agent.join_token: is required by the join_token node attestor (or pass -joinToken to run)'],
    ['an unknown workload attestor', ['WorkloadAttestor "unix"', 'WorkloadAttestor "docker"'], 'config: plugins.WorkloadAttestor.docker: unsupported workload attestor (supported: unix, k8s)'],
    ['a bad sync interval', ['sync_interval = "2s"', 'sync_interval = "often"'], 'config: agent.experimental.sync_interval: "often" is not a duration (examples: "90s", "1h30m", "500ms")'],
    ['a zero connection limit', ['sync_interval = "2s"', 'sync_interval = "2s"\n workload_api_limits {\n connections_per_process = 0\n }'], 'config: agent.experimental.workload_api_limits.connections_per_process: must be between 1 and ∞ (got 0)'],
    ['an unknown limit', ['sync_interval = "2s"', 'sync_interval = "2s"\n workload_api_limits {\n streams_per_conection = 5\n }'], 'config: agent.experimental.workload_api_limits.streams_per_conection: unknown key (did you mean "streams_per_connection"?)'],
  ];
  for (const [name, [from, to], message] of bad) {
    it(`rejects ${name}`, async () => expect(await error(base.replace(from, to))).toBe(message));
  }
});
