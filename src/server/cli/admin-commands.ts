/**
 * `spiffe-server token generate`, `agent list|show|count|evict|ban`, `bundle show|list|set|delete`
 * and `healthcheck`: thin formatting over the admin socket.
 */
import { readFile } from 'node:fs/promises';
import type { Command, CommandIo } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK } from '../../common/command.ts';
import type { FlagValues } from '../../common/flags.ts';
import { unaryCall } from '../../common/grpc-client.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe-id.ts';
import { fromSpiffeBundleJson, toSpiffeBundleJson, type BundleContent } from '../../common/spiffe-bundle.ts';
import { certificatesToPem, decodePemCertificates } from '../../common/pem.ts';
import type { Agent__Output } from '../../gen/spire/api/types/Agent.ts';
import type { Bundle__Output } from '../../gen/spire/api/types/Bundle.ts';
import type { SPIFFEID } from '../../gen/spire/api/types/SPIFFEID.ts';
import { formatGoTime } from '../../common/go-time.ts';
import { connectAdmin, socketPathFlag, type AdminClients } from './admin-client.ts';
import { outputFlag, protoJsonLine, wantsJson } from '../../common/proto-json-output.ts';

async function withAdmin(v: FlagValues, fn: (admin: AdminClients) => Promise<number>): Promise<number> {
  const admin = connectAdmin(v.strings.get('socketPath') as string);
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}

function requiredId(v: FlagValues, flag: string): SPIFFEID {
  const raw = v.strings.get(flag);
  if (raw === undefined) throw new ApiError(Code.INVALID_ARGUMENT, `a SPIFFE ID is required (-${flag})`);
  const parsed = parseSpiffeId(raw);
  if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `-${flag}: ${parsed.error}`);
  return { trust_domain: parsed.value.trustDomain, path: parsed.value.path };
}

/**
 * One agent as `spire-server agent list|show` prints it (`printAgents`): the expiration time
 * in Go's `time.Time` format and local zone, "Banned" in place of the (empty) serial of a
 * banned agent, the agent version when known, and a blank line after each agent.
 */
export function formatAgent(a: Agent__Output): string {
  const id = a.id === null ? '' : `spiffe://${a.id.trust_domain}${a.id.path}`;
  const lines = [`SPIFFE ID         : ${id}`, `Attestation type  : ${a.attestation_type}`, `Expiration time   : ${formatGoTime(a.x509svid_expires_at * 1000)}`];
  lines.push(a.banned ? 'Banned            : true' : `Serial number     : ${a.x509svid_serial_number}`);
  lines.push(`Can re-attest     : ${a.can_reattest}`);
  if (a.agent_version !== '') lines.push(`Agent version     : ${a.agent_version}`);
  return `${lines.join('\n')}\n\n`;
}

function bundleContent(b: Bundle__Output): BundleContent {
  return {
    x509Authorities: b.x509_authorities.map((c) => c.asn1),
    jwtAuthorities: b.jwt_authorities.map((k) => ({ keyId: k.key_id, publicKey: k.public_key, expiresAt: k.expires_at })),
    refreshHint: b.refresh_hint,
    sequenceNumber: b.sequence_number,
  };
}

function printBundle(io: CommandIo, b: Bundle__Output, format: string): void {
  if (format === 'spiffe') io.out(toSpiffeBundleJson(bundleContent(b)));
  else io.out(certificatesToPem(b.x509_authorities.map((c) => c.asn1)));
}

function formatFlag(v: FlagValues): 'pem' | 'spiffe' {
  const format = (v.strings.get('format') as string).toLowerCase();
  if (format !== 'pem' && format !== 'spiffe') throw new ApiError(Code.INVALID_ARGUMENT, `-format must be "pem" or "spiffe" (got "${format}")`);
  return format;
}

const formatSpec = { kind: 'string', usage: 'The format to show the bundle (only pem or spiffe)', default: 'pem' } as const;

export const adminCommands: readonly Command[] = [
  {
    name: 'token generate',
    summary: 'Generates a join token',
    flags: {
      spiffeID: { kind: 'string', usage: 'Additional SPIFFE ID to assign the token owner (optional)' },
      ttl: { kind: 'int', usage: 'Token TTL in seconds', default: 600 },
      output: outputFlag,
      socketPath: socketPathFlag,
    },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const ttl = v.ints.get('ttl') as number;
        if (ttl < 1) throw new ApiError(Code.INVALID_ARGUMENT, '-ttl must be at least 1 second');
        const res = await unaryCall(admin.agent, 'CreateJoinToken', {
          ttl,
          agent_id: v.strings.has('spiffeID') ? requiredId(v, 'spiffeID') : null,
        });
        if (wantsJson(v)) {
          io.out(protoJsonLine('spire.api.types.JoinToken', res));
          return EXIT_OK;
        }
        io.out(`Token: ${res.value}`);
        if (!v.strings.has('spiffeID')) io.out('Warning: Missing SPIFFE ID.');
        return EXIT_OK;
      }),
  },
  {
    name: 'agent list',
    summary: 'Lists attested agents and their SPIFFE IDs',
    flags: { output: outputFlag, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const json = wantsJson(v);
        const res = await unaryCall(admin.agent, 'ListAgents', {});
        if (json) {
          io.out(protoJsonLine('spire.api.server.agent.v1.ListAgentsResponse', res));
          return EXIT_OK;
        }
        const n = res.agents.length;
        io.out(n === 0 ? 'No attested agents found' : `Found ${n} attested ${n === 1 ? 'agent' : 'agents'}:\n\n${res.agents.map(formatAgent).join('')}`);
        return EXIT_OK;
      }),
  },
  {
    name: 'agent count',
    summary: 'Counts attested agents',
    flags: { output: outputFlag, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const json = wantsJson(v);
        const res = await unaryCall(admin.agent, 'CountAgents', {});
        if (json) {
          io.out(protoJsonLine('spire.api.server.agent.v1.CountAgentsResponse', res));
          return EXIT_OK;
        }
        io.out(`${res.count} attested ${res.count === 1 ? 'agent' : 'agents'}`);
        return EXIT_OK;
      }),
  },
  {
    name: 'agent show',
    summary: 'Shows the details of an attested agent given its SPIFFE ID',
    flags: { spiffeID: { kind: 'string', usage: 'The SPIFFE ID of the agent to show (agent identity)' }, output: outputFlag, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const json = wantsJson(v);
        const agent = await unaryCall(admin.agent, 'GetAgent', { id: requiredId(v, 'spiffeID') });
        if (json) {
          io.out(protoJsonLine('spire.api.types.Agent', agent));
          return EXIT_OK;
        }
        const selectors = agent.selectors.map((s) => `Selectors         : ${s.type}:${s.value}\n`).join('');
        io.out(`Found an attested agent given its SPIFFE ID\n\n${formatAgent(agent)}${selectors}`);
        return EXIT_OK;
      }),
  },
  {
    name: 'agent evict',
    summary: 'Evicts an attested agent given its SPIFFE ID',
    flags: { spiffeID: { kind: 'string', usage: 'The SPIFFE ID of the agent to evict (agent identity)' }, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        await unaryCall(admin.agent, 'DeleteAgent', { id: requiredId(v, 'spiffeID') });
        io.out('Agent evicted successfully');
        return EXIT_OK;
      }),
  },
  {
    name: 'agent ban',
    summary: 'Ban an attested agent given its SPIFFE ID',
    flags: { spiffeID: { kind: 'string', usage: 'The SPIFFE ID of the agent to ban (agent identity)' }, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        await unaryCall(admin.agent, 'BanAgent', { id: requiredId(v, 'spiffeID') });
        io.out('Agent banned successfully');
        return EXIT_OK;
      }),
  },
  {
    name: 'bundle show',
    summary: 'Prints the server CA bundle to stdout',
    flags: { format: formatSpec, output: outputFlag, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const format = formatFlag(v);
        const json = wantsJson(v);
        const bundle = await unaryCall(admin.bundle, 'GetBundle', {});
        if (json) io.out(protoJsonLine('spire.api.types.Bundle', bundle));
        else printBundle(io, bundle, format);
        return EXIT_OK;
      }),
  },
  {
    name: 'bundle list',
    summary: 'Lists federated bundle data',
    flags: { id: { kind: 'string', usage: 'SPIFFE ID of the trust domain' }, format: formatSpec, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const format = formatFlag(v);
        const id = v.strings.get('id');
        if (id !== undefined) {
          printBundle(io, await unaryCall(admin.bundle, 'GetFederatedBundle', { trust_domain: id }), format);
          return EXIT_OK;
        }
        const res = await unaryCall(admin.bundle, 'ListFederatedBundles', {});
        for (const b of res.bundles) {
          io.out(`****************************************\n* ${b.trust_domain}\n****************************************`);
          printBundle(io, b, format);
        }
        return EXIT_OK;
      }),
  },
  {
    name: 'bundle set',
    summary: 'Creates or updates federated bundle data',
    flags: {
      id: { kind: 'string', usage: 'SPIFFE ID of the trust domain' },
      path: { kind: 'string', usage: 'Path to the bundle data' },
      format: formatSpec,
      socketPath: socketPathFlag,
    },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const rawId = v.strings.get('id');
        if (rawId === undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'id flag is required (-id spiffe://<trust domain>)');
        const td = rawId.replace(/^spiffe:\/\//, '');
        const tdCheck = parseTrustDomain(td);
        if (!tdCheck.ok) throw new ApiError(Code.INVALID_ARGUMENT, `-id: ${tdCheck.error}`);
        const path = v.strings.get('path');
        if (path === undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'path flag is required (-path <bundle file>)');
        const text = await readFile(path, 'utf8').catch((err: unknown) => {
          throw new ApiError(Code.INVALID_ARGUMENT, `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
        });
        let content: BundleContent;
        if (formatFlag(v) === 'spiffe') {
          const parsed = fromSpiffeBundleJson(text);
          if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `${path}: ${parsed.error}`);
          content = parsed.value;
        } else {
          try {
            content = { x509Authorities: decodePemCertificates(text), jwtAuthorities: [], refreshHint: 0, sequenceNumber: 0 };
          } catch (err) {
            throw new ApiError(Code.INVALID_ARGUMENT, `${path}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
        const res = await unaryCall(admin.bundle, 'BatchSetFederatedBundle', {
          bundle: [
            {
              trust_domain: td,
              x509_authorities: content.x509Authorities.map((asn1) => ({ asn1 })),
              jwt_authorities: content.jwtAuthorities.map((k) => ({ public_key: k.publicKey, key_id: k.keyId, expires_at: k.expiresAt })),
              refresh_hint: content.refreshHint,
              sequence_number: content.sequenceNumber,
            },
          ],
        });
        const status = res.results[0]?.status;
        if (status !== undefined && status !== null && status.code !== Code.OK) {
          io.err(`Error: failed to set federated bundle: ${status.message}`);
          return EXIT_FAILURE;
        }
        io.out('bundle set.');
        return EXIT_OK;
      }),
  },
  {
    name: 'bundle delete',
    summary: 'Deletes federated bundle data',
    flags: { id: { kind: 'string', usage: 'SPIFFE ID of the trust domain' }, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        const id = v.strings.get('id');
        if (id === undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'id flag is required (-id spiffe://<trust domain>)');
        const res = await unaryCall(admin.bundle, 'BatchDeleteFederatedBundle', { trust_domains: [id] });
        const status = res.results[0]?.status;
        if (status !== undefined && status !== null && status.code !== Code.OK) {
          io.err(`Error: failed to delete federated bundle: ${status.message}`);
          return EXIT_FAILURE;
        }
        io.out('bundle deleted.');
        return EXIT_OK;
      }),
  },
  {
    name: 'healthcheck',
    summary: 'Determines server health status',
    flags: { shallow: { kind: 'bool', usage: 'Perform a less stringent health check' }, verbose: { kind: 'bool', usage: 'Print verbose information' }, socketPath: socketPathFlag },
    run: (v, io) =>
      withAdmin(v, async (admin) => {
        // spire-server's texts: "Error: server is unhealthy: …" on stderr, and with -verbose a
        // "Checking server health..." line first and the RPC error before the verdict.
        const verbose = v.bools.get('verbose') === true;
        if (verbose) io.out('Checking server health...');
        try {
          const res = await unaryCall(admin.health, 'Check', { service: '' }, { deadlineMs: 5000 });
          if (res.status !== 'SERVING') {
            io.err(`Error: server is unhealthy: server returned status "${res.status}"`);
            return EXIT_FAILURE;
          }
        } catch (err) {
          if (verbose) io.err(`Failed to check health: ${err instanceof Error ? err.message : String(err)}`);
          io.err('Error: server is unhealthy: unable to determine health');
          return EXIT_FAILURE;
        }
        io.out('Server is healthy.');
        return EXIT_OK;
      }),
  },
];
