/**
 * The admin socket's settings in SPIRE's names (`agent { admin_socket_path, authorized_delegates }`),
 * validated as spire-agent validates them (cmd/spire-agent/cli/run). Pure.
 */
import { dirname, resolve } from 'node:path';
import type { ConfigReader } from '../../common/config-reader.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import { socketPathLengthProblem } from '../../common/unix-socket-file.ts';

/** The admin API's configuration. */
export interface AdminConfig {
  /** Absolute path of the admin socket; undefined when the admin API is off (the default). */
  readonly adminSocketPath: string | undefined;
  /** SPIFFE IDs allowed to use the Delegated Identity API. */
  readonly authorizedDelegates: readonly string[];
}

/**
 * Reads `admin_socket_path` and `authorized_delegates` from the `agent` block. The admin socket
 * may not be in the Workload API socket's directory or below it (workloads are given that
 * directory); every delegate must be a SPIFFE ID of the agent's trust domain.
 */
export function parseAdminConfig(agent: ConfigReader, trustDomain: string, socketPath: string, cwd: string, warnings: string[]): AdminConfig {
  const raw = agent.optionalString('admin_socket_path');
  const adminSocketPath = raw === undefined || raw === '' ? undefined : resolve(cwd, raw);
  if (adminSocketPath !== undefined) {
    if (adminSocketPath.startsWith(`${dirname(socketPath)}/`)) {
      agent.fail('admin_socket_path', 'admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket');
    }
    const tooLong = socketPathLengthProblem(adminSocketPath);
    if (tooLong !== undefined) agent.fail('admin_socket_path', `"${adminSocketPath}" ${tooLong}`);
  }
  const authorizedDelegates = agent.stringList('authorized_delegates');
  for (const delegate of authorizedDelegates) {
    const id = parseSpiffeId(delegate);
    if (!id.ok) agent.fail('authorized_delegates', `error validating authorized delegate: ${id.error}`);
    if (id.value.trustDomain !== trustDomain) {
      agent.fail('authorized_delegates', `error validating authorized delegate: SPIFFE ID "${delegate}" is not a member of trust domain "${trustDomain}"`);
    }
  }
  if (authorizedDelegates.length > 0 && adminSocketPath === undefined) {
    warnings.push('agent.authorized_delegates has no effect without agent.admin_socket_path: the Delegated Identity API is not served');
  }
  return { adminSocketPath, authorizedDelegates };
}
