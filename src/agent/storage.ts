/**
 * The agent's persistent state: `<data_dir>/agent-data.json` holds the agent SVID chain,
 * its private key (with the `disk` key manager), the trust bundle and whether the agent
 * re-attests to rotate. One file, written atomically with mode 0600, so the SVID and its
 * key can never disagree and a crash at any moment leaves the previous or the new state.
 * Beside it, `<data_dir>/server-tls.json` remembers the servers that need TLS 1.2 without
 * session tickets (spiffe/spire#7076), by `host:port`, written the same way.
 */
import { join } from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileIfExists, writeFileAtomic } from '../common/atomic-file.ts';
import { ApiError, Code } from '../common/errors.ts';
import type { ServerTlsMode } from './server-client/tls-fallback.ts';

/** What the agent keeps across restarts. */
export interface StoredState {
  trustDomain: string;
  /** DER chain, leaf first. */
  svid: Buffer[];
  /** Absent with the `memory` key manager: the agent then re-attests after a restart. */
  key: KeyObject | undefined;
  /** DER roots of the own trust domain. */
  bundle: Buffer[];
  reattestable: boolean;
}

interface StoredFile {
  version: 1;
  trust_domain: string;
  svid: string[];
  key?: string;
  bundle: string[];
  reattestable: boolean;
}

/** The state file's path. */
export function stateFile(dataDir: string): string {
  return join(dataDir, 'agent-data.json');
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** Parses the state file's text; an unreadable file is an error naming it (never silently replaced). */
export function parseState(path: string, text: string): StoredState {
  let doc: Partial<StoredFile>;
  try {
    doc = JSON.parse(text) as Partial<StoredFile>;
  } catch (err) {
    throw new ApiError(Code.FAILED_PRECONDITION, `storage: ${path} is not valid JSON (${err instanceof Error ? err.message : String(err)}); move it away to re-attest`);
  }
  if (doc.version !== 1 || typeof doc.trust_domain !== 'string' || !isStringArray(doc.svid) || !isStringArray(doc.bundle)) {
    throw new ApiError(Code.FAILED_PRECONDITION, `storage: ${path} is not an agent state file of version 1; move it away to re-attest`);
  }
  let key: KeyObject | undefined;
  if (typeof doc.key === 'string') {
    try {
      key = createPrivateKey({ key: Buffer.from(doc.key, 'base64'), format: 'der', type: 'pkcs8' });
    } catch {
      throw new ApiError(Code.FAILED_PRECONDITION, `storage: ${path} holds an unreadable agent key; move it away to re-attest`);
    }
  }
  return {
    trustDomain: doc.trust_domain,
    svid: doc.svid.map((c) => Buffer.from(c, 'base64')),
    key,
    bundle: doc.bundle.map((c) => Buffer.from(c, 'base64')),
    reattestable: doc.reattestable === true,
  };
}

/** Loads the stored state, or undefined when there is none. */
export async function loadState(dataDir: string): Promise<StoredState | undefined> {
  const path = stateFile(dataDir);
  const raw = await readFileIfExists(path);
  return raw === undefined ? undefined : parseState(path, raw.toString('utf8'));
}

/** Writes the state atomically (0600). */
export async function saveState(dataDir: string, state: StoredState): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const doc: StoredFile = {
    version: 1,
    trust_domain: state.trustDomain,
    svid: state.svid.map((c) => c.toString('base64')),
    bundle: state.bundle.map((c) => c.toString('base64')),
    reattestable: state.reattestable,
  };
  if (state.key !== undefined) doc.key = state.key.export({ format: 'der', type: 'pkcs8' }).toString('base64');
  await writeFileAtomic(stateFile(dataDir), `${JSON.stringify(doc)}\n`, { mode: 0o600 });
}

/** The file that remembers which servers need another TLS mode (spiffe/spire#7076). */
export function serverTlsFile(dataDir: string): string {
  return join(dataDir, 'server-tls.json');
}

/** The TLS mode remembered for each server address (`host:port`); only non-default modes are kept. */
export type ServerTlsModes = Readonly<Record<string, ServerTlsMode>>;

/**
 * Loads the remembered TLS modes. Missing file: none. An unreadable or unknown file is not
 * fatal (the modes are a hint the agent finds again by probing): `problem` says why it was ignored.
 */
export async function loadServerTlsModes(dataDir: string): Promise<{ modes: ServerTlsModes; problem?: string }> {
  const path = serverTlsFile(dataDir);
  const raw = await readFileIfExists(path);
  if (raw === undefined) return { modes: {} };
  try {
    const doc = JSON.parse(raw.toString('utf8')) as { version?: unknown; servers?: unknown };
    if (doc.version !== 1 || typeof doc.servers !== 'object' || doc.servers === null) throw new Error('not a server TLS file of version 1');
    const modes: Record<string, ServerTlsMode> = {};
    for (const [address, entry] of Object.entries(doc.servers as Record<string, { mode?: unknown }>)) {
      if (entry?.mode === 'tls12-no-tickets') modes[address] = entry.mode;
    }
    return { modes };
  } catch (err) {
    return { modes: {}, problem: `storage: ignoring ${path}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Writes the TLS modes atomically (0600), as the agent state; `default` entries are dropped. */
export async function saveServerTlsModes(dataDir: string, modes: ServerTlsModes): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const servers: Record<string, { mode: ServerTlsMode }> = {};
  for (const [address, mode] of Object.entries(modes)) if (mode !== 'default') servers[address] = { mode };
  await writeFileAtomic(serverTlsFile(dataDir), `${JSON.stringify({ version: 1, servers })}\n`, { mode: 0o600 });
}

/** Deletes the stored identity (a banned agent must not reuse it). */
export async function deleteState(dataDir: string): Promise<void> {
  await rm(stateFile(dataDir), { force: true });
}
