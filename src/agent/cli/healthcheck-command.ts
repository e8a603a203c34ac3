/**
 * `spiffe-agent healthcheck [-shallow] [-verbose] [-socketPath P]`: spire-agent's health check
 * (`cmd/spire-agent/cli/healthcheck/healthcheck.go`), a `grpc.health.v1.Health/Check` on the
 * Workload API socket. Prints "Agent is healthy." (exit 0) or "Agent is unhealthy: …" (exit 1).
 */
import type { Command } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../../common/command.ts';
import { checkHealth, formatRpcError } from '../workload-client/index.ts';
import { endpointFromFlags, socketPathFlag, timeoutFlag, timeoutFromFlags, type AgentCliOptions } from './api-common.ts';

/** The `healthcheck` command, with test seams (environment, working directory). */
export function createHealthcheckCommand(options: AgentCliOptions = {}): Command {
  return {
    name: 'healthcheck',
    summary: 'Determines agent health status',
    flags: {
      // Accepted for compatibility; spire-agent's agent-side check ignores it too.
      shallow: { kind: 'bool', usage: 'Perform a less stringent health check' },
      verbose: { kind: 'bool', usage: 'Print verbose information' },
      socketPath: socketPathFlag,
      // Not in spire-agent (which waits without limit); a probe needs a bound.
      timeout: timeoutFlag,
    },
    async run(v, io) {
      const endpoint = endpointFromFlags(v, options);
      if (!endpoint.ok) {
        io.err(endpoint.error);
        return EXIT_USAGE;
      }
      const timeout = timeoutFromFlags(v);
      if (!timeout.ok) {
        io.err(timeout.error);
        return EXIT_USAGE;
      }
      const verbose = v.bools.get('verbose') === true;
      if (verbose) io.out('Checking agent health...');
      let status: string;
      try {
        status = await checkHealth(endpoint.value, timeout.value === undefined ? {} : { timeoutMs: timeout.value });
      } catch (err) {
        if (verbose) io.err(`Failed to check health: ${formatRpcError(err)}`);
        io.err('Agent is unhealthy: unable to determine health');
        return EXIT_FAILURE;
      }
      if (status !== 'SERVING') {
        io.err(`Agent is unhealthy: agent returned status "${status}"`);
        return EXIT_FAILURE;
      }
      io.out('Agent is healthy.');
      return EXIT_OK;
    },
  };
}

/** The `healthcheck` command as `spiffe-agent` runs it. */
export const healthcheckCommand: Command = createHealthcheckCommand();
