// `npm start`: a server and an agent on this machine, data under ./.data/quickstart (or
// $QUICKSTART_DIR), an entry for the current user's uid, and the SPIFFE_ENDPOINT_SOCKET to use
// once the socket serves. The agent's admin socket serves `spiffe-agent debug …` to this user.
import { mkdir, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { parseConfigText } from '../src/common/config-file.ts';
import { createLogger } from '../src/common/logger.ts';
import { ApiError, Code } from '../src/common/errors.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/server.ts';
import { parseAgentConfig } from '../src/agent/config.ts';
import { startAgent } from '../src/agent/agent.ts';
import { createWorkloadClient } from '../src/agent/workload-client/index.ts';
import { loadState } from '../src/agent/storage.ts';
import { agentSvid, isUsable } from '../src/agent/agent-svid.ts';

const root = resolve(process.env['QUICKSTART_DIR'] || resolve(import.meta.dirname, '..', '.data', 'quickstart'));
const uid = process.getuid?.() ?? 0;
const adminSocket = join(root, 'server', 'api.sock');
const agentSocket = join(root, 'agent', 'public', 'api.sock');
const agentAdminSocket = join(root, 'agent', 'private', 'admin.sock');
const userId = `spiffe://example.org/user/${uid}`;
await mkdir(join(root, 'server'), { recursive: true, mode: 0o700 });
await mkdir(join(root, 'agent'), { recursive: true, mode: 0o700 });
const logLevel = process.env['LOG_LEVEL'] ?? 'WARN';

const serverConf = `server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port = ${process.env['SERVER_PORT'] ?? 8081}
  socket_path = "${adminSocket}"
  data_dir = "${join(root, 'server', 'data')}"
  log_level = "${logLevel}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`;
await writeFile(join(root, 'server', 'server.conf'), serverConf);
const serverConfig = parseServerConfig(await parseConfigText('server.conf', serverConf));
const server = await startServer({ config: serverConfig, logger: createLogger({ name: 'spiffe-server', level: logLevel }) });

// A join token for this agent (used only if it has no stored identity yet).
const token = randomUUID();
server.datastore.createJoinToken({ token, expiresAt: Math.floor(Date.now() / 1000) + 600 });

const agentConf = `agent {
  trust_domain = "example.org"
  server_address = "127.0.0.1"
  server_port = ${server.port}
  socket_path = "${agentSocket}"
  data_dir = "${join(root, 'agent', 'data')}"
  trust_bundle_path = "${join(serverConfig.dataDir, 'ca', 'bundle.pem')}"
  join_token = "${token}"
  log_level = "${logLevel}"
  # debug explain / debug workloads for this user: its own entry's ID is an authorized delegate.
  admin_socket_path = "${agentAdminSocket}"
  authorized_delegates = ["${userId}"]
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;
await writeFile(join(root, 'agent', 'agent.conf'), agentConf);
const agentConfig = parseAgentConfig(await parseConfigText('agent.conf', agentConf));

// Register the current user's uid under this agent before it starts, so its first sync
// already brings the entry: the agent ID is its stored one, or the one this token gives.
const stored = await loadState(agentConfig.dataDir).catch(() => undefined);
const agentId =
  stored !== undefined && stored.key !== undefined && stored.svid.length > 0 && isUsable(agentSvid(stored.svid, stored.key, false), Date.now())
    ? agentSvid(stored.svid, stored.key, false).spiffeId
    : `spiffe://example.org/spire/agent/join_token/${token}`;
try {
  server.datastore.createEntry({ spiffeId: userId, parentId: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] });
} catch (err) {
  if (!(err instanceof ApiError && err.code === Code.ALREADY_EXISTS)) throw err;
}
const agent = await startAgent({ config: agentConfig, logger: createLogger({ name: 'spiffe-agent', level: logLevel }) });

// Wait until the socket serves this user's SVID.
const client = createWorkloadClient({ address: `unix://${agentSocket}`, timeoutMs: 5000 });
for (;;) {
  try {
    const ctx = await client.fetchX509Context();
    if (ctx.svids.length > 0) break;
  } catch {
    // not synced yet
  }
  await new Promise((r) => setTimeout(r, 200));
}
client.close();

const node = 'node_modules/.bin/node';
process.stdout.write(`SPIFFE_ENDPOINT_SOCKET=unix://${agentSocket}

A server (trust domain example.org, 127.0.0.1:${server.port}) and an agent (${agentId}) are running.
Your uid ${uid} is registered as ${userId}. In another shell, try:

  export SPIFFE_ENDPOINT_SOCKET=unix://${agentSocket}
  ${node} bin/spiffe-agent.js api fetch x509
  ${node} bin/spiffe-agent.js api fetch jwt -audience demo
  ${node} bin/spiffe-agent.js api watch
  ${node} bin/spiffe-server.js entry show -socketPath ${adminSocket}

Why does a process get (or not get) an identity? Who is connected?

  ${node} bin/spiffe-agent.js debug explain -socketPath ${agentAdminSocket} -pid $$
  ${node} bin/spiffe-agent.js debug workloads -socketPath ${agentAdminSocket} -watch

Ctrl-C stops both.
`);

let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await agent.stop();
  await server.stop();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
