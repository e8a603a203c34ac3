/**
 * `spiffe-agent debug explain` and `spiffe-agent debug workloads [-watch]`: our own admin
 * API (spiffenodeagent.admin.v1.AgentDebug) over the agent's admin socket
 * (`admin_socket_path`), which only local root and the configured delegates may use.
 * Exit codes: 0 done (explain: whatever the verdict), 1 failure, 2 usage.
 */
import { credentials } from '@grpc/grpc-js';
import type { Command, CommandIo } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../../common/command.ts';
import { systemClock } from '../../common/clock.ts';
import { goCodeName } from '../../common/code-names.ts';
import { ApiError } from '../../common/errors.ts';
import { unaryCall, unixTarget } from '../../common/grpc-client.ts';
import { parseDuration } from '../../common/duration.ts';
import type { FlagValues } from '../../common/flags.ts';
import { AgentDebugClient } from '../../common/proto.ts';
import { goJsonLine, outputFlag, protoJsonObject, wantsJson } from '../../common/proto-json-output.ts';
import { parseSelector } from '../../common/selector.ts';
import type { ExplainRequest } from '../../gen/spiffenodeagent/admin/v1/ExplainRequest.ts';
import { formatRpcError } from '../workload-client/index.ts';
import { interruptFor, timeoutFromFlags, type AgentCliOptions } from './api-common.ts';
import { formatExplain, formatWorkloads } from './debug-format.ts';

/** Where the helm chart and SPIRE's examples put the agent's admin socket. */
export const DEFAULT_ADMIN_SOCKET = '/tmp/spire-agent/private/admin.sock';

const adminSocketFlag = { kind: 'string', usage: "Path to the agent's admin socket (admin_socket_path)", default: DEFAULT_ADMIN_SOCKET } as const;
const timeoutFlag = { kind: 'string', usage: 'Time to wait for an answer (0: no limit)', default: '10s' } as const;

/** The request `debug explain`'s flags ask for, or a usage error. */
export function explainRequestFromFlags(v: FlagValues): { ok: true; value: ExplainRequest } | { ok: false; error: string } {
  const pid = v.ints.get('pid') ?? 0;
  const podUid = v.strings.get('podUID') ?? '';
  const container = v.strings.get('container') ?? '';
  const selectors = v.lists.get('selector') ?? [];
  const given = [pid !== 0, podUid !== '', selectors.length > 0].filter(Boolean).length;
  if (given !== 1) return { ok: false, error: 'give exactly one of -pid, -podUID or -selector (repeatable)' };
  if (container !== '' && podUid === '') return { ok: false, error: '-container needs -podUID' };
  if (pid !== 0) {
    if (!Number.isSafeInteger(pid) || pid < 1 || pid > 0x7fffffff) return { ok: false, error: `invalid value "${pid}" for flag -pid: not a process ID` };
    return { ok: true, value: { pid } };
  }
  if (podUid !== '') return { ok: true, value: { pod: { pod_uid: podUid, container_name: container } } };
  const parsed = [];
  for (const text of selectors) {
    const s = parseSelector(text);
    if (!s.ok) return { ok: false, error: `invalid value "${text}" for flag -selector: ${s.error}` };
    parsed.push(s.value);
  }
  return { ok: true, value: { selectors: { selectors: parsed } } };
}

async function withDebugClient(v: FlagValues, io: CommandIo, options: AgentCliOptions, fn: (client: AgentDebugClient, timeoutMs: number | undefined) => Promise<number>): Promise<number> {
  const timeout = timeoutFromFlags(v);
  if (!timeout.ok) {
    io.err(timeout.error);
    return EXIT_USAGE;
  }
  const client = new AgentDebugClient(unixTarget(v.strings.get('socketPath') ?? DEFAULT_ADMIN_SOCKET, options.cwd), credentials.createInsecure());
  try {
    return await fn(client, timeout.value);
  } catch (err) {
    // Every failure of a call is a gRPC status (connection failures too): printed as grpc-go does.
    io.err(err instanceof ApiError ? `rpc error: code = ${goCodeName(err.code)} desc = ${err.message}` : formatRpcError(err));
    return EXIT_FAILURE;
  } finally {
    client.close();
  }
}

function explainCommand(options: AgentCliOptions): Command {
  return {
    name: 'debug explain',
    summary: 'Explains why a process, a pod or selectors get (or do not get) an identity',
    flags: {
      socketPath: adminSocketFlag,
      pid: { kind: 'int', usage: 'The process to explain', default: 0 },
      podUID: { kind: 'string', usage: 'The pod to explain (by UID), with -container for one of its containers', default: '' },
      container: { kind: 'string', usage: 'A container of -podUID, by name', default: '' },
      selector: { kind: 'list', usage: 'A selector (type:value) to explain; repeat for several' },
      output: outputFlag,
      timeout: timeoutFlag,
    },
    async run(v, io) {
      const request = explainRequestFromFlags(v);
      if (!request.ok) {
        io.err(request.error);
        return EXIT_USAGE;
      }
      return withDebugClient(v, io, options, async (client, timeoutMs) => {
        const response = await unaryCall(client, 'Explain', request.value, { deadlineMs: timeoutMs });
        io.out(wantsJson(v) ? goJsonLine(protoJsonObject('spiffenodeagent.admin.v1.ExplainResponse', response)) : formatExplain(response, (options.clock ?? systemClock).now()));
        return EXIT_OK;
      });
    },
  };
}

function workloadsCommand(options: AgentCliOptions): Command {
  return {
    name: 'debug workloads',
    summary: 'Lists the processes connected to the Workload API',
    flags: {
      socketPath: adminSocketFlag,
      watch: { kind: 'bool', usage: 'Refresh in place until interrupted', default: false },
      interval: { kind: 'string', usage: 'Refresh interval with -watch', default: '1s' },
      output: outputFlag,
      timeout: timeoutFlag,
    },
    async run(v, io) {
      const interval = parseDuration(v.strings.get('interval') ?? '1s');
      if (!interval.ok || interval.value <= 0) {
        io.err(`invalid value "${v.strings.get('interval') ?? ''}" for flag -interval: ${interval.ok ? 'must be positive' : interval.error}`);
        return EXIT_USAGE;
      }
      const clock = options.clock ?? systemClock;
      return withDebugClient(v, io, options, async (client, timeoutMs) => {
        const show = async (): Promise<void> => {
          const response = await unaryCall(client, 'ListWorkloads', {}, { deadlineMs: timeoutMs });
          if (wantsJson(v)) io.out(goJsonLine(protoJsonObject('spiffenodeagent.admin.v1.ListWorkloadsResponse', response)));
          // -watch: clear the screen and redraw, like top.
          else io.out(`${v.bools.get('watch') === true ? '\x1b[H\x1b[2J' : ''}${formatWorkloads(response.workloads, clock.now())}`);
        };
        await show();
        if (v.bools.get('watch') !== true) return EXIT_OK;
        const interrupt = interruptFor(options);
        try {
          while (!interrupt.signal.aborted) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, interval.value);
              interrupt.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
            });
            if (!interrupt.signal.aborted) await show();
          }
        } finally {
          interrupt.dispose();
        }
        return EXIT_OK;
      });
    },
  };
}

/** The `debug` commands. */
export function debugCommands(options: AgentCliOptions = {}): Command[] {
  return [explainCommand(options), workloadsCommand(options)];
}
