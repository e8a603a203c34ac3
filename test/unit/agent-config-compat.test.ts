/**
 * SPIRE compatibility of the agent config: the shapes the SPIRE helm chart renders (JSON with
 * single-element arrays and null plugin_data) and SPIRE's HCL both parse to the same config.
 */
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfigFile, parseConfigText } from '../../src/common/config-file.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { ApiError } from '../../src/common/errors.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures/config');

describe('SPIRE agent.conf compatibility', () => {
  it('reads the JSON the helm chart renders and the equivalent HCL to the same config', async () => {
    const fromJson = parseAgentConfig(await loadConfigFile(join(FIXTURES, 'helm-agent.json')), '/');
    const fromHcl = parseAgentConfig(await loadConfigFile(join(FIXTURES, 'helm-agent.conf')), '/');
    expect(fromHcl).toEqual(fromJson);
    expect(fromJson).toMatchObject({
      trustDomain: 'example.org',
      serverAddress: 'spire-server.spire-server',
      serverPort: 443,
      socketPath: '/tmp/spire-agent/public/spire-agent.sock',
      nodeAttestor: 'k8s_psat',
      k8sPsat: { cluster: 'example-cluster', tokenPath: '/var/run/secrets/tokens/spire-agent' },
      keyManager: 'memory',
      healthChecks: { listenerEnabled: true, bindAddress: '0.0.0.0', bindPort: 9982, livePath: '/live', readyPath: '/ready' },
      telemetry: { prometheus: { host: '0.0.0.0', port: 9988 }, ignoredSinks: [] },
      warnings: ['agent.log_format "text" is not supported; logs are structured JSON'],
    });
    expect(fromJson.workloadAttestors.k8s).toMatchObject({ kubeletCaPath: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', nodeNameEnv: 'KUBELET_ADDR' });
    expect(fromJson.workloadAttestors.unix).toEqual({ discoverWorkloadPath: false, workloadSizeLimit: 0 });
  });

  it('reads JSON from a file named agent.conf, as the helm chart names its ConfigMap key', async () => {
    const json = await readFile(join(FIXTURES, 'helm-agent.json'), 'utf8');
    const config = parseAgentConfig(await parseConfigText('/run/spire/config/agent.conf', json), '/');
    expect(config.serverAddress).toBe('spire-server.spire-server');
  });

  it('expands environment variables with -expandEnv', async () => {
    const text = (await readFile(join(FIXTURES, 'helm-agent.conf'), 'utf8')).replace('"example.org"', '"${TRUST_DOMAIN}"');
    const config = parseAgentConfig(await parseConfigText('agent.conf', text, { expandEnv: true, env: { TRUST_DOMAIN: 'prod.example' } }), '/');
    expect(config.trustDomain).toBe('prod.example');
  });

  const typos: Array<[string, string, string]> = [
    ['a misspelt agent key', '"server_port": "443"', 'config: agent.server_prot: unknown key (did you mean "server_port"?)'],
    ['a misspelt plugin_data key', '"node_name_env": "KUBELET_ADDR"', 'config: plugins.WorkloadAttestor.k8s.plugin_data.node_nam_env: unknown key (did you mean "node_name_env"?)'],
    ['a misspelt health key', '"listener_enabled": true', 'config: health_checks.listener_enable: unknown key (did you mean "listener_enabled"?)'],
  ];
  for (const [name, from, message] of typos) {
    it(`names ${name} and suggests the right one`, async () => {
      const json = await readFile(join(FIXTURES, 'helm-agent.json'), 'utf8');
      const broken = json.replace(from, from.replace('server_port', 'server_prot').replace('node_name_env', 'node_nam_env').replace('listener_enabled', 'listener_enable'));
      const err = await Promise.resolve()
        .then(async () => parseAgentConfig(await parseConfigText('agent.json', broken), '/'))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).message).toBe(message);
    });
  }

  it('accepts the admin socket settings in SPIRE\'s names, and refuses an admin socket beside the Workload API socket as spire-agent does', async () => {
    const json = JSON.parse(await readFile(join(FIXTURES, 'helm-agent.json'), 'utf8')) as { agent: Record<string, unknown> };
    json.agent['admin_socket_path'] = '/tmp/spire-agent/private/admin.sock';
    json.agent['authorized_delegates'] = ['spiffe://example.org/cilium'];
    const config = parseAgentConfig(await parseConfigText('agent.json', JSON.stringify(json)), '/');
    expect(config.admin).toEqual({ adminSocketPath: '/tmp/spire-agent/private/admin.sock', authorizedDelegates: ['spiffe://example.org/cilium'] });

    json.agent['admin_socket_path'] = '/tmp/spire-agent/public/admin/admin.sock';
    const err = await Promise.resolve()
      .then(async () => parseAgentConfig(await parseConfigText('agent.json', JSON.stringify(json)), '/'))
      .catch((e: unknown) => e);
    expect((err as ApiError).message).toBe('config: agent.admin_socket_path: admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket');
  });
});
