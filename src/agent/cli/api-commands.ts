/**
 * `spiffe-agent api fetch x509|jwt`, `api fetch`, `api validate jwt` and `api watch`:
 * spire-agent's Workload API commands (`cmd/spire-agent/cli/api/*.go`) with the same flags,
 * output and files. Exit codes: 0 success, 1 failure (the error is printed as spire-agent
 * prints it, e.g. `rpc error: code = PermissionDenied desc = no identity issued`), 2 usage.
 */
import { createPrivateKey } from 'node:crypto';
import type { Command, CommandIo } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../../common/command.ts';
import { systemClock } from '../../common/clock.ts';
import { Code } from '../../common/errors.ts';
import type { FlagValues } from '../../common/flags.ts';
import { trustDomainId } from '../../common/spiffe-id.ts';
import { createWorkloadClient, formatRpcError, isRpcStatus, type JsonValue, type WorkloadClient, type X509Context } from '../workload-client/index.ts';
import { endpointFromFlags, interruptFor, socketPathFlag, timeoutFlag, timeoutFromFlags, type AgentCliOptions } from './api-common.ts';
import { goJsonLine, outputFlag, protoJsonObject, wantsJson } from '../../common/proto-json-output.ts';
import type { JwtBundles, JwtSvid } from '../workload-client/index.ts';
import { formatX509Context } from './x509-print.ts';
import { writeX509Context } from './x509-write.ts';

/**
 * Connects as the flags say, runs `fn`, prints a failure as spire-agent does and closes the
 * client. `withTimeout` false gives the client no deadline (watches).
 */
async function withClient(
  v: FlagValues,
  io: CommandIo,
  options: AgentCliOptions,
  withTimeout: boolean,
  fn: (client: WorkloadClient) => Promise<number>,
): Promise<number> {
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
  const client = createWorkloadClient({ address: endpoint.value, ...(withTimeout && timeout.value !== undefined ? { timeoutMs: timeout.value } : {}) });
  try {
    return await fn(client);
  } catch (err) {
    io.err(formatRpcError(err));
    return EXIT_FAILURE;
  } finally {
    client.close();
  }
}

/** Checks every SVID key parses, as spire-agent does before printing or writing anything. */
function checkKeys(context: X509Context): void {
  for (const [i, svid] of context.svids.entries()) {
    try {
      createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`failed to parse svid entry ${i} for spiffe id "${svid.spiffeId}": failed to parse private key: ${reason}`);
    }
  }
}

/** JSON with object keys sorted at every level, compact: how protojson prints a Struct. */
function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const record = value as { readonly [key: string]: JsonValue };
  const keys = Object.keys(record).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k] as JsonValue)}`).join(',')}}`;
}

/**
 * The X509SVIDResponse a context came from, as spire-agent's `-output json` prints it
 * (certificates concatenated DER, trust domains keyed by ID, no CRLs: the agent sends none).
 */
function x509ResponseJson(context: X509Context): string {
  return goJsonLine(
    protoJsonObject('X509SVIDResponse', {
      svids: context.svids.map((s) => ({ spiffe_id: s.spiffeId, x509_svid: Buffer.concat([...s.certificates]), x509_svid_key: s.privateKey, bundle: Buffer.concat([...s.bundle]), hint: s.hint })),
      crl: [],
      federated_bundles: Object.fromEntries([...context.federatedBundles].map(([td, certs]) => [trustDomainId(td), Buffer.concat([...certs])])),
    }),
  );
}

/** The JWTSVIDResponse and JWTBundlesResponse, as spire-agent's `api fetch jwt -output json` prints them (one JSON array). */
function jwtResponsesJson(svids: readonly JwtSvid[], bundles: JwtBundles): string {
  return goJsonLine([
    protoJsonObject('JWTSVIDResponse', { svids: svids.map((s) => ({ spiffe_id: s.spiffeId, svid: s.token, hint: s.hint })) }),
    protoJsonObject('JWTBundlesResponse', { bundles: Object.fromEntries([...bundles].map(([td, jwks]) => [trustDomainId(td), jwks])) }),
  ]);
}

function fetchX509Command(name: string, summary: string, options: AgentCliOptions): Command {
  const clock = options.clock ?? systemClock;
  return {
    name,
    summary,
    flags: {
      silent: { kind: 'bool', usage: 'Suppress stdout' },
      write: { kind: 'string', usage: 'Write SVID data to the specified path (optional; only available for pretty output format)' },
      output: outputFlag,
      socketPath: socketPathFlag,
      timeout: timeoutFlag,
    },
    run: (v, io) =>
      withClient(v, io, options, true, async (client) => {
        const json = wantsJson(v);
        const start = clock.now();
        const context = await client.fetchX509Context();
        const elapsedMs = clock.now() - start;
        // As spire-agent: -silent and -write belong to the pretty output only.
        if (json) {
          io.out(x509ResponseJson(context));
          return EXIT_OK;
        }
        checkKeys(context);
        if (v.bools.get('silent') !== true) {
          io.out(formatX509Context(context, { elapsedMs, federatedLabel: trustDomainId }));
        }
        const dir = v.strings.get('write');
        if (dir !== undefined && dir !== '') await writeX509Context(dir, context, (line) => io.out(line));
        return EXIT_OK;
      }),
  };
}

function fetchJwtCommand(options: AgentCliOptions): Command {
  return {
    name: 'api fetch jwt',
    summary: 'Fetches a JWT SVID from the Workload API',
    flags: {
      audience: { kind: 'string', usage: 'comma separated list of audience values' },
      spiffeID: { kind: 'string', usage: 'SPIFFE ID subject (optional)' },
      output: outputFlag,
      socketPath: socketPathFlag,
      timeout: timeoutFlag,
    },
    async run(v, io) {
      const json = wantsJson(v);
      const audience = (v.strings.get('audience') ?? '').split(',').filter((a) => a !== '');
      if (audience.length === 0) {
        io.err('audience must be specified');
        return EXIT_USAGE;
      }
      return withClient(v, io, options, true, async (client) => {
        // spire-agent reads the JWT bundles first, so a caller without identity fails there.
        const bundles = await client.fetchJwtBundles();
        const svids = await client.fetchJwtSvids(audience, v.strings.get('spiffeID'));
        if (json) {
          io.out(jwtResponsesJson(svids, bundles));
          return EXIT_OK;
        }
        const lines: string[] = [];
        for (const svid of svids) {
          lines.push(`token(${svid.spiffeId}):`, `\t${svid.token}`);
          if (svid.hint !== '') lines.push(`hint(${svid.spiffeId}):`, `\t${svid.hint}`);
        }
        for (const [td, jwks] of bundles) lines.push(`bundle(${trustDomainId(td)}):`, `\t${jwks.toString('utf8')}`);
        io.out(`${lines.join('\n')}\n`);
        return EXIT_OK;
      });
    },
  };
}

function validateJwtCommand(options: AgentCliOptions): Command {
  return {
    name: 'api validate jwt',
    summary: 'Validates a JWT SVID',
    flags: {
      audience: { kind: 'string', usage: 'expected audience value' },
      svid: { kind: 'string', usage: 'JWT SVID' },
      output: outputFlag,
      socketPath: socketPathFlag,
      timeout: timeoutFlag,
    },
    async run(v, io) {
      const json = wantsJson(v);
      const audience = v.strings.get('audience') ?? '';
      const token = v.strings.get('svid') ?? '';
      if (audience === '' || token === '') {
        io.err(audience === '' ? 'audience must be specified' : 'svid must be specified');
        return EXIT_USAGE;
      }
      return withClient(v, io, options, true, async (client) => {
        try {
          const result = await client.validateJwtSvid(audience, token);
          // ValidateJWTSVIDResponse; protojson prints the claims Struct as plain JSON.
          if (json) {
            io.out(goJsonLine({ spiffe_id: result.spiffeId, claims: result.claims }));
            return EXIT_OK;
          }
          io.out(`SVID is valid.\nSPIFFE ID : ${result.spiffeId}\nClaims    : ${canonicalJson(result.claims)}\n`);
          return EXIT_OK;
        } catch (err) {
          if (isRpcStatus(err) && err.code === Code.INVALID_ARGUMENT) io.err(`SVID is not valid: ${err.message}`);
          else io.err(`unable to validate JWT SVID: ${formatRpcError(err)}`);
          return EXIT_FAILURE;
        }
      });
    },
  };
}

function watchCommand(options: AgentCliOptions): Command {
  const clock = options.clock ?? systemClock;
  return {
    name: 'api watch',
    summary: "Attaches to the Workload API and prints updates as they're received",
    // Like spire-agent's watch: no -timeout, a watch waits as long as it takes.
    flags: { socketPath: socketPathFlag },
    run: (v, io) =>
      withClient(v, io, options, false, async (client) => {
        const interrupt = interruptFor(options);
        let last = clock.now();
        try {
          await client.watchX509(
            (context) => {
              const now = clock.now();
              io.out(formatX509Context(context, { elapsedMs: now - last, federatedLabel: (td) => td }));
              last = now;
            },
            interrupt.signal,
            { onError: (err) => io.err(formatRpcError(err)) },
          );
          return EXIT_OK;
        } finally {
          interrupt.dispose();
        }
      }),
  };
}

/** The `api` commands, with test seams (environment, clock, interrupt). */
export function createAgentApiCommands(options: AgentCliOptions = {}): readonly Command[] {
  return [
    fetchX509Command('api fetch x509', 'Fetches X509 SVIDs from the Workload API', options),
    fetchX509Command('api fetch', 'Fetches X509 SVIDs from the Workload API (same as api fetch x509)', options),
    fetchJwtCommand(options),
    validateJwtCommand(options),
    watchCommand(options),
  ];
}

/** The `api` commands as `spiffe-agent` runs them: `process.env`, the system clock, SIGINT/SIGTERM. */
export const agentApiCommands: readonly Command[] = createAgentApiCommands();
