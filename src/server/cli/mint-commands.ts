/**
 * `spiffe-server x509 mint` and `jwt mint`: mint an SVID for any workload ID over the admin
 * socket (MintX509SVID, MintJWTSVID), with spire-server's flags, output and error texts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import type { Command, CommandIo } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK } from '../../common/command.ts';
import type { FlagValues } from '../../common/flags.ts';
import { unaryCall } from '../../common/grpc-client.ts';
import { toApiError } from '../../common/errors.ts';
import { goCodeName } from '../../common/code-names.ts';
import { parseDuration } from '../../common/duration.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import { createCsrWithSans } from '../../common/csr.ts';
import { certificatesToPem, toPem } from '../../common/pem.ts';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import { outputFlag, protoJsonLine, wantsJson } from '../../common/proto-json-output.ts';
import { connectAdmin, socketPathFlag } from './admin-client.ts';

/** A failure printed as spire-server prints it: `Error: <message>` on stderr, exit 1. */
class MintError extends Error {}

/** A status from the server as Go's grpc prints it, after spire-server's prefix. */
function rpcFailure(prefix: string, err: unknown): MintError {
  const e = toApiError(err);
  return new MintError(`${prefix}: rpc error: code = ${goCodeName(e.code)} desc = ${e.message}`);
}

/** Go's `t.UTC().Format(time.RFC3339)`. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function spiffeIdFlag(v: FlagValues): { uri: string; trustDomain: string; path: string } {
  const raw = v.strings.get('spiffeID') ?? '';
  if (raw === '') throw new MintError('spiffeID must be specified');
  const parsed = parseSpiffeId(raw);
  if (!parsed.ok) throw new MintError(parsed.error);
  return parsed.value;
}

/** `-ttl` as a Go duration; the seconds sent, rounded up as spire-server does. */
function ttlFlag(v: FlagValues): { ms: number; seconds: number } {
  const raw = v.strings.get('ttl') as string;
  const parsed = parseDuration(raw);
  if (!parsed.ok) throw new MintError(`invalid value "${raw}" for flag -ttl: ${parsed.error}`);
  const seconds = Math.ceil(parsed.value / 1000);
  if (seconds > 2 ** 31 - 1) throw new MintError(`invalid value for TTL: ${seconds} overflows int32`);
  return { ms: parsed.value, seconds };
}

function cappedWarning(io: CommandIo, kind: string, expiresAtMs: number, ttlMs: number): void {
  if (expiresAtMs - Date.now() < ttlMs) io.err(`${kind} lifetime was capped shorter than specified ttl; expires "${rfc3339(expiresAtMs)}"`);
}

async function run(v: FlagValues, io: CommandIo, body: (v: FlagValues, io: CommandIo) => Promise<void>): Promise<number> {
  try {
    await body(v, io);
    return EXIT_OK;
  } catch (err) {
    if (!(err instanceof MintError)) throw err;
    io.err(`Error: ${err.message}`);
    return EXIT_FAILURE;
  }
}

async function x509Mint(v: FlagValues, io: CommandIo): Promise<void> {
  const id = spiffeIdFlag(v);
  const ttl = ttlFlag(v);
  const json = wantsJson(v);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = createCsrWithSans(privateKey, publicKey, { uris: [id.uri], dnsNames: v.lists.get('dns') ?? [], emptySubject: true });
  const admin = connectAdmin(v.strings.get('socketPath') as string);
  try {
    const res = await unaryCall(admin.svid, 'MintX509SVID', { csr, ttl: ttl.seconds }).catch((err: unknown) => {
      throw rpcFailure('unable to mint SVID', err);
    });
    const chain = res.svid?.cert_chain ?? [];
    if (chain.length === 0) throw new MintError('server response missing SVID chain');
    const bundle = await unaryCall(admin.bundle, 'GetBundle', {}).catch((err: unknown) => {
      throw rpcFailure('unable to get bundle', err);
    });
    const roots = bundle.x509_authorities.map((a) => a.asn1);
    if (roots.length === 0) throw new MintError('server response missing X509 Authorities');
    cappedWarning(io, 'X509-SVID', Number(res.svid?.expires_at ?? 0) * 1000, ttl.ms);
    const keyDer = privateKey.export({ format: 'der', type: 'pkcs8' });
    const write = v.strings.get('write');
    if (write === undefined || write === '') {
      if (json) {
        const b64 = (d: Uint8Array): string => Buffer.from(d).toString('base64');
        // spire-server prints a one-element list of its result struct, fields in struct order.
        io.out(`${JSON.stringify([{ x509_svid: chain.map(b64), private_key: b64(keyDer), root_cas: roots.map(b64) }])}\n`);
      } else {
        io.out(`X509-SVID:\n${certificatesToPem(chain)}\nPrivate key:\n${toPem('PRIVATE KEY', keyDer)}\nRoot CAs:\n${certificatesToPem(roots)}\n`);
      }
      return;
    }
    const files: [name: string, text: string, mode: number, what: string, done: string][] = [
      ['svid.pem', certificatesToPem(chain), 0o644, 'SVID', 'X509-SVID written to'],
      ['key.pem', toPem('PRIVATE KEY', keyDer), 0o600, 'key', 'Private key written to'],
      ['bundle.pem', certificatesToPem(roots), 0o644, 'bundle', 'Root CAs written to'],
    ];
    for (const [name, text, mode, what, done] of files) {
      const path = join(write, name);
      await writeFileAtomic(path, text, { mode }).catch((err: unknown) => {
        throw new MintError(`unable to write ${what}: ${err instanceof Error ? err.message : String(err)}`);
      });
      io.out(`${done} ${path}\n`);
    }
  } finally {
    admin.close();
  }
}

function jwtExpiry(token: string): number | undefined {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

async function jwtMint(v: FlagValues, io: CommandIo): Promise<void> {
  const id = spiffeIdFlag(v);
  const audience = v.lists.get('audience') ?? [];
  if (audience.length === 0) throw new MintError('at least one audience must be specified');
  const ttl = ttlFlag(v);
  const json = wantsJson(v);
  const admin = connectAdmin(v.strings.get('socketPath') as string);
  try {
    const res = await unaryCall(admin.svid, 'MintJWTSVID', { id: { trust_domain: id.trustDomain, path: id.path }, audience, ttl: ttl.seconds }).catch(
      (err: unknown) => {
        throw rpcFailure('unable to mint SVID', err);
      },
    );
    const token = res.svid?.token ?? '';
    if (token === '') throw new MintError('server response missing token');
    const exp = jwtExpiry(token);
    if (exp === undefined) io.err('Unable to determine JWT-SVID lifetime: no expiry claim');
    else cappedWarning(io, 'JWT-SVID', exp, ttl.ms);
    const write = v.strings.get('write');
    if (write === undefined || write === '') {
      io.out(json ? protoJsonLine('spire.api.server.svid.v1.MintJWTSVIDResponse', res) : `${token}\n`);
      return;
    }
    await writeFileAtomic(write, token, { mode: 0o600 }).catch((err: unknown) => {
      throw new MintError(`unable to write token: ${err instanceof Error ? err.message : String(err)}`);
    });
    io.out(`JWT-SVID written to ${write}\n`);
  } finally {
    admin.close();
  }
}

const ttlSpec = { kind: 'string', usage: 'TTL of the SVID (a Go duration such as 1h; 0: the server default)', default: '0s' } as const;

/** `x509 mint` and `jwt mint`. */
export const mintCommands: readonly Command[] = [
  {
    name: 'x509 mint',
    summary: 'Mints an X509-SVID',
    flags: {
      spiffeID: { kind: 'string', usage: 'SPIFFE ID of the X509-SVID' },
      ttl: ttlSpec,
      dns: { kind: 'list', usage: 'DNS name that will be included in SVID. Can be used more than once.' },
      write: { kind: 'string', usage: 'Directory to write output to instead of stdout' },
      output: outputFlag,
      socketPath: socketPathFlag,
    },
    run: (v, io) => run(v, io, x509Mint),
  },
  {
    name: 'jwt mint',
    summary: 'Mints a JWT-SVID',
    flags: {
      spiffeID: { kind: 'string', usage: 'SPIFFE ID of the JWT-SVID' },
      ttl: ttlSpec,
      audience: { kind: 'list', usage: 'Audience claim that will be included in the SVID. Can be used more than once.' },
      write: { kind: 'string', usage: 'File to write token to instead of stdout' },
      output: outputFlag,
      socketPath: socketPathFlag,
    },
    run: (v, io) => run(v, io, jwtMint),
  },
];
