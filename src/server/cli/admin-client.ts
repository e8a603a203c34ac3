/**
 * Clients for the server's local admin socket, shared by the CLI commands.
 */
import { credentials, type Client } from '@grpc/grpc-js';
import { AgentClient, BundleClient, EntryClient, HealthClient, SvidClient } from '../../common/proto.ts';
import { unixTarget } from '../../common/grpc-client.ts';
import type { FlagSpec } from '../../common/flags.ts';

/** SPIRE's default admin socket path. */
export const DEFAULT_ADMIN_SOCKET = '/tmp/spire-server/private/api.sock';

/** The -socketPath flag every admin command takes. */
export const socketPathFlag: FlagSpec = { kind: 'string', usage: 'Path to the SPIRE Server API socket', default: DEFAULT_ADMIN_SOCKET };

/** The admin API clients, sharing one channel. */
export interface AdminClients {
  agent: AgentClient;
  bundle: BundleClient;
  entry: EntryClient;
  health: HealthClient;
  svid: SvidClient;
  close(): void;
}

/** Connects to the admin socket (lazily: the first call dials). */
export function connectAdmin(socketPath: string): AdminClients {
  const target = unixTarget(socketPath);
  const creds = credentials.createInsecure();
  const agent = new AgentClient(target, creds);
  // Share the first client's channel so every command uses one connection.
  const options = { channelOverride: agent.getChannel() };
  const bundle = new BundleClient(target, creds, options);
  const entry = new EntryClient(target, creds, options);
  const health = new HealthClient(target, creds, options);
  const svid = new SvidClient(target, creds, options);
  return {
    agent,
    bundle,
    entry,
    health,
    svid,
    close: () => (agent as Client).close(),
  };
}
