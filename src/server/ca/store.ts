/**
 * On-disk state of the CA, under `<dataDir>/ca/` (mode 0700):
 *
 * - `state.json` (0600): the commit point. Which X.509 CA and JWT key are active and prepared
 *   (certificates inline, base64 DER), the bundle's authorities and its sequence number.
 * - `x509-ca-<id>.key.pem`, `jwt-<kid>.key.pem` (0600): PKCS#8 PEM private keys. A key file is
 *   written before the state that references it, and deleted only after a state without it
 *   is written, so a crash leaves at most an unreferenced key file, removed at the next open.
 * - `bundle.pem` (0644): the current X.509 authorities, derived, for operators and for an
 *   agent's `trust_bundle_path`.
 *
 * All writes go through `writeFileAtomic`. A file that is present but unreadable is an error
 * naming the file; the CA never generates new keys over existing state.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

import { atomicTempPrefix, readFileIfExists, writeFileAtomic } from '../../common/atomic-file.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { certificatesToPem } from '../../common/pem.ts';
import type { JwtAuthority } from './types.ts';

/** A persisted X.509 CA. */
export interface StoredX509Ca {
  readonly id: string;
  readonly keyFile: string;
  readonly issuedAt: number;
  readonly certDer: Buffer;
  /** Upstream intermediates that follow the CA certificate in SVID chains. */
  readonly chainDer: readonly Buffer[];
  readonly upstreamFingerprint: string | undefined;
}

/** A persisted JWT signing key. */
export interface StoredJwtKey {
  readonly kid: string;
  readonly keyFile: string;
  readonly issuedAt: number;
  readonly notAfter: number;
  readonly publicKeyDer: Buffer;
}

/** Everything the CA persists. */
export interface StoredState {
  readonly trustDomain: string;
  readonly sequenceNumber: number;
  readonly x509Active: StoredX509Ca;
  readonly x509Next: StoredX509Ca | undefined;
  readonly jwtActive: StoredJwtKey;
  readonly jwtNext: StoredJwtKey | undefined;
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: readonly JwtAuthority[];
}

const STATE_FILE = 'state.json';
const BUNDLE_FILE = 'bundle.pem';
const STATE_VERSION = 1;
const KEY_FILE_RE = /^(?:x509-ca|jwt)-[A-Za-z0-9]+\.key\.pem$/;

/** The key file name of an X.509 CA slot id. */
export function x509KeyFile(id: string): string {
  return `x509-ca-${id}.key.pem`;
}

/** The key file name of a JWT key id. */
export function jwtKeyFile(kid: string): string {
  return `jwt-${kid}.key.pem`;
}

function corrupt(path: string, detail: string): ApiError {
  return new ApiError(Code.FAILED_PRECONDITION, `ca: ${path} is corrupt: ${detail}; restore it or move the CA directory away to start a new CA`);
}

type Json = Record<string, unknown>;

function obj(v: unknown, path: string, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw corrupt(path, `${what} is not an object`);
  return v as Json;
}
function num(o: Json, k: string, path: string, what: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw corrupt(path, `${what}.${k} is not an integer`);
  return v;
}
function text(o: Json, k: string, path: string, what: string): string {
  const v = o[k];
  if (typeof v !== 'string' || v === '') throw corrupt(path, `${what}.${k} is not a non-empty string`);
  return v;
}
function b64(v: unknown, path: string, what: string): Buffer {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(v)) throw corrupt(path, `${what} is not base64`);
  return Buffer.from(v, 'base64');
}
function b64List(v: unknown, path: string, what: string): Buffer[] {
  if (!Array.isArray(v)) throw corrupt(path, `${what} is not a list`);
  return v.map((x, i) => b64(x, path, `${what}[${i}]`));
}
function keyFileName(o: Json, path: string, what: string): string {
  const f = text(o, 'keyFile', path, what);
  if (!KEY_FILE_RE.test(f)) throw corrupt(path, `${what}.keyFile has an unexpected name`);
  return f;
}

function decodeX509(v: unknown, path: string, what: string): StoredX509Ca {
  const o = obj(v, path, what);
  const up = o['upstreamFingerprint'];
  if (up !== undefined && up !== null && typeof up !== 'string') throw corrupt(path, `${what}.upstreamFingerprint is not a string`);
  return {
    id: text(o, 'id', path, what),
    keyFile: keyFileName(o, path, what),
    issuedAt: num(o, 'issuedAt', path, what),
    certDer: b64(o['certificate'], path, `${what}.certificate`),
    chainDer: b64List(o['chain'], path, `${what}.chain`),
    upstreamFingerprint: typeof up === 'string' ? up : undefined,
  };
}
function encodeX509(s: StoredX509Ca): Json {
  return {
    id: s.id,
    keyFile: s.keyFile,
    issuedAt: s.issuedAt,
    certificate: s.certDer.toString('base64'),
    chain: s.chainDer.map((c) => c.toString('base64')),
    upstreamFingerprint: s.upstreamFingerprint ?? null,
  };
}
function decodeJwt(v: unknown, path: string, what: string): StoredJwtKey {
  const o = obj(v, path, what);
  return {
    kid: text(o, 'kid', path, what),
    keyFile: keyFileName(o, path, what),
    issuedAt: num(o, 'issuedAt', path, what),
    notAfter: num(o, 'notAfter', path, what),
    publicKeyDer: b64(o['publicKey'], path, `${what}.publicKey`),
  };
}
function encodeJwt(s: StoredJwtKey): Json {
  return { kid: s.kid, keyFile: s.keyFile, issuedAt: s.issuedAt, notAfter: s.notAfter, publicKey: s.publicKeyDer.toString('base64') };
}

/** Reads and writes the CA directory. */
export class CaStore {
  /** `<dataDir>/ca`. */
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'ca');
  }

  /** Path of a file in the CA directory. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /** Creates the directory if needed and enforces mode 0700. */
  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** Loads the state, or `undefined` when there is none yet. Throws naming the file when it is unusable. */
  async load(): Promise<StoredState | undefined> {
    const path = this.path(STATE_FILE);
    const raw = await readFileIfExists(path);
    if (raw === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw corrupt(path, raw.length === 0 ? 'the file is empty' : 'not valid JSON');
    }
    const top = obj(parsed, path, 'state');
    if (top['version'] !== STATE_VERSION) throw corrupt(path, `unsupported version ${JSON.stringify(top['version'])}`);
    const x509 = obj(top['x509'], path, 'x509');
    const jwt = obj(top['jwt'], path, 'jwt');
    const bundle = obj(top['bundle'], path, 'bundle');
    const jwtAuthoritiesRaw = bundle['jwtAuthorities'];
    if (!Array.isArray(jwtAuthoritiesRaw)) throw corrupt(path, 'bundle.jwtAuthorities is not a list');
    return {
      trustDomain: text(top, 'trustDomain', path, 'state'),
      sequenceNumber: num(top, 'sequenceNumber', path, 'state'),
      x509Active: decodeX509(x509['active'], path, 'x509.active'),
      x509Next: x509['next'] == null ? undefined : decodeX509(x509['next'], path, 'x509.next'),
      jwtActive: decodeJwt(jwt['active'], path, 'jwt.active'),
      jwtNext: jwt['next'] == null ? undefined : decodeJwt(jwt['next'], path, 'jwt.next'),
      x509Authorities: b64List(bundle['x509Authorities'], path, 'bundle.x509Authorities'),
      jwtAuthorities: jwtAuthoritiesRaw.map((a, i) => {
        const o = obj(a, path, `bundle.jwtAuthorities[${i}]`);
        return {
          keyId: text(o, 'keyId', path, `bundle.jwtAuthorities[${i}]`),
          publicKey: b64(o['publicKey'], path, `bundle.jwtAuthorities[${i}].publicKey`),
          expiresAt: num(o, 'expiresAt', path, `bundle.jwtAuthorities[${i}]`),
        };
      }),
    };
  }

  /** Commits a new state (atomically), then refreshes `bundle.pem`. */
  async save(state: StoredState): Promise<void> {
    const json = {
      version: STATE_VERSION,
      trustDomain: state.trustDomain,
      sequenceNumber: state.sequenceNumber,
      x509: { active: encodeX509(state.x509Active), next: state.x509Next ? encodeX509(state.x509Next) : null },
      jwt: { active: encodeJwt(state.jwtActive), next: state.jwtNext ? encodeJwt(state.jwtNext) : null },
      bundle: {
        x509Authorities: state.x509Authorities.map((c) => c.toString('base64')),
        jwtAuthorities: state.jwtAuthorities.map((a) => ({ keyId: a.keyId, publicKey: a.publicKey.toString('base64'), expiresAt: a.expiresAt })),
      },
    };
    await writeFileAtomic(this.path(STATE_FILE), `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
    await writeFileAtomic(this.path(BUNDLE_FILE), certificatesToPem(state.x509Authorities), { mode: 0o644 });
  }

  /** Writes a private key as PKCS#8 PEM, mode 0600. */
  async writeKey(file: string, key: KeyObject): Promise<void> {
    const pem = key.export({ type: 'pkcs8', format: 'pem' });
    await writeFileAtomic(this.path(file), pem, { mode: 0o600 });
  }

  /** Reads a private key the state references; a missing or unparsable file is an error naming it. */
  async readKey(file: string): Promise<KeyObject> {
    const path = this.path(file);
    const pem = await readFileIfExists(path);
    if (pem === undefined) {
      throw new ApiError(Code.FAILED_PRECONDITION, `ca: key file ${path} referenced by ${this.path(STATE_FILE)} is missing`);
    }
    try {
      return createPrivateKey({ key: pem, format: 'pem' });
    } catch {
      throw corrupt(path, 'cannot parse the PEM private key');
    }
  }

  /**
   * Removes key files no state references (left by a crash between writing a key and
   * committing the state) and stray temporary files. Call only while nothing else writes.
   */
  async removeUnreferenced(referenced: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.dir)) {
      const isOurTemp = [STATE_FILE, BUNDLE_FILE].some((f) => name.startsWith(atomicTempPrefix(f))) ||
        (name.startsWith('.') && name.includes('.key.pem.tmp-'));
      if ((KEY_FILE_RE.test(name) && !referenced.has(name)) || isOurTemp) {
        await unlink(this.path(name)).catch(() => undefined);
        removed.push(name);
      }
    }
    return removed;
  }

  /** Deletes a key file that no committed state references any more. */
  async removeKey(file: string): Promise<void> {
    await unlink(this.path(file)).catch(() => undefined);
  }
}
