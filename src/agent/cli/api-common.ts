/**
 * What every `api` command and `healthcheck` share: the `-socketPath` and `-timeout` flags,
 * turning them into a Workload API endpoint, and the test seams of the agent CLI.
 */
import type { FlagSpec, FlagValues } from '../../common/flags.ts';
import { parseDuration } from '../../common/duration.ts';
import type { Clock } from '../../common/clock.ts';
import { defaultEndpointAddress, parseWorkloadEndpoint, SOCKET_ENV, type WorkloadEndpoint } from '../workload-client/index.ts';
import type { Parsed } from '../../common/spiffe-id.ts';

/** spire-agent's default Workload API socket (`cmd/spire-agent/cli/common/defaults_posix.go`). */
export const DEFAULT_AGENT_SOCKET = '/tmp/spire-agent/public/api.sock';

/** spire-agent's default `-timeout` of the `api` commands. */
export const DEFAULT_API_TIMEOUT = '5s';

/** Test seams of the agent CLI commands; every field is optional. */
export interface AgentCliOptions {
  /** Environment for `SPIFFE_ENDPOINT_SOCKET`. Default: `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Directory a relative `-socketPath` is resolved against, as spire-agent does. Default: `process.cwd()`. */
  cwd?: string;
  /** Time for "Received … after", "expires in …" and watch timestamps. Default: the system clock. */
  clock?: Clock;
  /** Returns the signal that stops `api watch`. Default: a signal aborted by SIGINT or SIGTERM. */
  interruptSignal?: () => AbortSignal;
}

/** The `-socketPath` flag: a path (spire-agent) or a `unix:`/`tcp:` URI. No static default: see {@link endpointFromFlags}. */
export const socketPathFlag: FlagSpec = {
  kind: 'string',
  usage: `Path to the SPIRE Agent API Unix domain socket, or a unix:/tcp: URI (default $${SOCKET_ENV}, else ${DEFAULT_AGENT_SOCKET})`,
};

/** The `-timeout` flag (a Go duration; 0 means none). */
export const timeoutFlag: FlagSpec = { kind: 'string', usage: 'Time to wait for a response', default: DEFAULT_API_TIMEOUT };

/**
 * The endpoint named by `-socketPath`, else `$SPIFFE_ENDPOINT_SOCKET` (a URI, per the spec),
 * else spire-agent's default socket. The error names where the bad address came from.
 */
export function endpointFromFlags(v: FlagValues, options: AgentCliOptions): Parsed<WorkloadEndpoint> {
  const flag = v.strings.get('socketPath');
  if (flag !== undefined) {
    const parsed = parseWorkloadEndpoint(flag, { allowPath: true, baseDir: options.cwd ?? process.cwd() });
    return parsed.ok ? parsed : { ok: false, error: `invalid value "${flag}" for flag -socketPath: ${parsed.error}` };
  }
  const fromEnv = defaultEndpointAddress(options.env ?? process.env);
  if (fromEnv === undefined) return parseWorkloadEndpoint(DEFAULT_AGENT_SOCKET, { allowPath: true });
  const parsed = parseWorkloadEndpoint(fromEnv);
  return parsed.ok ? parsed : { ok: false, error: `invalid ${SOCKET_ENV} "${fromEnv}": ${parsed.error}` };
}

/** The `-timeout` value in milliseconds (undefined for 0: no deadline). */
export function timeoutFromFlags(v: FlagValues): Parsed<number | undefined> {
  const raw = v.strings.get('timeout') ?? DEFAULT_API_TIMEOUT;
  const parsed = parseDuration(raw);
  if (!parsed.ok) return { ok: false, error: `invalid value "${raw}" for flag -timeout: ${parsed.error}` };
  return { ok: true, value: parsed.value > 0 ? parsed.value : undefined };
}

/** A signal that stops a long-running command, and the cleanup of whatever feeds it. */
export interface Interrupt {
  readonly signal: AbortSignal;
  dispose(): void;
}

/** The interrupt of a long-running command: the test seam's signal, or the first SIGINT/SIGTERM. */
export function interruptFor(options: AgentCliOptions): Interrupt {
  if (options.interruptSignal !== undefined) return { signal: options.interruptSignal(), dispose: () => undefined };
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
