/**
 * Path settings the config parsers can judge without touching the filesystem: a socket_path
 * longer than a Unix socket address holds is a config error naming the field, in the agent
 * and in the server.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/common/config-file.ts';
import { ApiError } from '../../src/common/errors.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { parseServerConfig } from '../../src/server/config.ts';

const LONG = `/run/${'x'.repeat(100)}/api.sock`; // 114 bytes
const FITS = `/run/${'x'.repeat(93)}/api.sock`; // 107 bytes

function agentConf(socketPath: string): string {
  return `agent {
  trust_domain = "example.org"
  server_address = "127.0.0.1"
  server_port = 8081
  socket_path = "${socketPath}"
  insecure_bootstrap = true
  join_token = "t"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;
}

function serverConf(socketPath: string): string {
  return `server {
  trust_domain = "example.org"
  data_dir = "/var/lib/spire"
  socket_path = "${socketPath}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`;
}

async function outcome(parse: () => Promise<unknown>): Promise<string> {
  try {
    await parse();
    return 'ok';
  } catch (err) {
    if (err instanceof ApiError) return err.message;
    throw err;
  }
}

describe('socket_path length', () => {
  const rows = [
    { name: 'agent, fits', parse: async () => parseAgentConfig(await parseConfigText('agent.conf', agentConf(FITS)), '/'), expected: 'ok' },
    {
      name: 'agent, too long',
      parse: async () => parseAgentConfig(await parseConfigText('agent.conf', agentConf(LONG)), '/'),
      expected: `config: agent.socket_path: "${LONG}" is 114 bytes long, but a Unix socket path can have at most 107; choose a shorter path`,
    },
    {
      name: 'agent, relative path too long once resolved',
      parse: async () => parseAgentConfig(await parseConfigText('agent.conf', agentConf('api.sock')), `/${'d'.repeat(100)}`),
      expected: `config: agent.socket_path: "/${'d'.repeat(100)}/api.sock" is 110 bytes long, but a Unix socket path can have at most 107; choose a shorter path`,
    },
    {
      name: 'agent, too long from the -socketPath flag',
      parse: async () => parseAgentConfig(await parseConfigText('agent.conf', agentConf(FITS)), '/', { socketPath: LONG }),
      expected: `config: agent.socket_path: "${LONG}" is 114 bytes long, but a Unix socket path can have at most 107; choose a shorter path`,
    },
    { name: 'server, fits', parse: async () => parseServerConfig(await parseConfigText('server.conf', serverConf(FITS)), '/'), expected: 'ok' },
    {
      name: 'server, too long',
      parse: async () => parseServerConfig(await parseConfigText('server.conf', serverConf(LONG)), '/'),
      expected: `config: server.socket_path: "${LONG}" is 114 bytes long, but a Unix socket path can have at most 107; choose a shorter path`,
    },
  ];
  it.each(rows)('$name', async ({ parse, expected }) => {
    expect(await outcome(parse)).toBe(expected);
  });
});
