/**
 * The server's certificate authority: signs X509-SVIDs and JWT-SVIDs, maintains the trust
 * domain's bundle, rotates its X.509 CA and JWT key on the injected clock (the caller schedules
 * `maybeRotate`; see `nextRotationAt`), and persists everything under `<dataDir>/ca/`.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { systemClock, type Clock } from '../../common/clock.ts';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe-id.ts';
import { parseAndVerifyCsr } from './csr.ts';
import { signJwt } from './jwt.ts';
import { KEY_TYPES, generateP256, isKeyType, spkiOf, svidPublicKeyProblem, type KeyType } from './keys.ts';
import { certificatesToPem } from '../../common/pem.ts';
import { nextRotationTime, planRotation, type Authorities, type RotationDeps, type RotationMode } from './rotation.ts';
import { NOT_BEFORE_CUSHION_MS, newJwtKey, newX509Ca } from './slots.ts';
import { openState, persistPlan } from './state.ts';
import type {
  AuthorityStatus,
  CaBundle,
  CertificateAuthority,
  CaOptions,
  CsrSvidRequest,
  JwtSvidRequest,
  JwtSvidResult,
  RotationResult,
  ServerIdentity,
  X509SvidRequest,
  X509SvidResult,
} from './types.ts';
import { CaStore } from './store.ts';
import { loadDiskUpstream } from './upstream-disk.ts';
import { signX509SvidCertificate } from './x509-templates.ts';

const HOUR_MS = 60 * 60 * 1000;
const DEFAULTS = {
  caTtlMs: 24 * HOUR_MS,
  defaultX509SvidTtlMs: HOUR_MS,
  defaultJwtSvidTtlMs: 5 * 60 * 1000,
  refreshHintSeconds: 300,
};
const DNS_NAME_RE = /^[\x21-\x7e]{1,253}$/;

function positive(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v <= 0) throw new ApiError(Code.INVALID_ARGUMENT, `ca: ${name} must be a positive number, got ${v}`);
  return v;
}

function ttlOrDefault(ttlMs: number | undefined, fallback: number): number {
  return ttlMs !== undefined && Number.isFinite(ttlMs) && ttlMs > 0 ? ttlMs : fallback;
}

/** Options with defaults applied and checked. */
interface Settings {
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly caTtlMs: number;
  readonly x509TtlMs: number;
  readonly jwtTtlMs: number;
  readonly refreshHint: number;
  readonly caSubject: CaOptions['caSubject'];
  readonly upstream: CaOptions['upstream'];
  readonly caKeyType: KeyType;
  readonly jwtKeyType: KeyType;
  readonly jwtIssuer: string | undefined;
}

function keyTypeOf(name: string, v: string | undefined, fallback: KeyType): KeyType {
  if (v === undefined) return fallback;
  if (!isKeyType(v)) throw new ApiError(Code.INVALID_ARGUMENT, `ca: ${name} must be one of ${KEY_TYPES.join(', ')}, got "${v}"`);
  return v;
}

function settingsOf(opts: CaOptions): Settings {
  const td = parseTrustDomain(opts.trustDomain);
  if (!td.ok) throw new ApiError(Code.INVALID_ARGUMENT, `ca: invalid trust domain "${opts.trustDomain}": ${td.error}`);
  const caKeyType = keyTypeOf('caKeyType', opts.caKeyType, 'ec-p256');
  return {
    trustDomain: opts.trustDomain,
    clock: opts.clock ?? systemClock,
    caTtlMs: positive('caTtlMs', opts.caTtlMs, DEFAULTS.caTtlMs),
    x509TtlMs: positive('defaultX509SvidTtlMs', opts.defaultX509SvidTtlMs, DEFAULTS.defaultX509SvidTtlMs),
    jwtTtlMs: positive('defaultJwtSvidTtlMs', opts.defaultJwtSvidTtlMs, DEFAULTS.defaultJwtSvidTtlMs),
    refreshHint: Math.ceil(positive('refreshHintSeconds', opts.refreshHintSeconds, DEFAULTS.refreshHintSeconds)),
    caSubject: opts.caSubject,
    upstream: opts.upstream,
    caKeyType,
    // SPIRE: jwt_key_type defaults to ca_key_type.
    jwtKeyType: keyTypeOf('jwtKeyType', opts.jwtKeyType, caKeyType),
    jwtIssuer: opts.jwtIssuer === '' ? undefined : opts.jwtIssuer,
  };
}

class Authority implements CertificateAuthority {
  readonly trustDomain: string;
  readonly #s: Settings;
  readonly #clock: Clock;
  readonly #store: CaStore;
  #state: Authorities;
  #bundle: CaBundle;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(settings: Settings, store: CaStore, state: Authorities, sequenceNumber: number) {
    this.#s = settings;
    this.trustDomain = settings.trustDomain;
    this.#clock = settings.clock;
    this.#store = store;
    this.#state = state;
    this.#bundle = this.#makeBundle(state, sequenceNumber);
  }

  #makeBundle(a: Authorities, sequenceNumber: number): CaBundle {
    return Object.freeze({
      trustDomain: this.trustDomain,
      x509Authorities: Object.freeze(a.roots.map((r) => r.der)),
      jwtAuthorities: Object.freeze(a.jwtAuthorities.map((j) => Object.freeze({ ...j }))),
      refreshHint: this.#s.refreshHint,
      sequenceNumber,
    });
  }

  #checkId(id: string, kind: 'X509-SVID' | 'JWT-SVID'): string {
    const p = parseSpiffeId(id);
    if (!p.ok) throw new ApiError(Code.INVALID_ARGUMENT, `invalid ${kind} ID: ${p.error}`);
    const td = this.trustDomain;
    if (p.value.trustDomain !== td) {
      throw new ApiError(Code.INVALID_ARGUMENT, `invalid ${kind} ID: "${id}" is not a member of trust domain "${td}"`);
    }
    if (p.value.path === '') {
      throw new ApiError(Code.INVALID_ARGUMENT, `invalid ${kind} ID: "${id}" is not a member of trust domain "${td}"; path is empty`);
    }
    return p.value.uri;
  }

  #issue(spiffeId: string, spkiDer: Buffer, req: { ttlMs?: number; dnsNames?: readonly string[]; subject?: X509SvidRequest['subject'] }): X509SvidResult {
    const dnsNames = req.dnsNames ?? [];
    for (const name of dnsNames) {
      if (!DNS_NAME_RE.test(name)) throw new ApiError(Code.INVALID_ARGUMENT, `invalid DNS name ${JSON.stringify(name)}`);
    }
    const now = this.#clock.now();
    const ca = this.#state.x509Active;
    if (now >= ca.notAfter) {
      throw new ApiError(Code.UNAVAILABLE, `ca: the X.509 CA expired at ${new Date(ca.notAfter).toISOString()} and has not been rotated`);
    }
    const cert = signX509SvidCertificate(
      {
        spiffeId,
        spkiDer,
        notBefore: now - NOT_BEFORE_CUSHION_MS,
        notAfter: Math.min(now + ttlOrDefault(req.ttlMs, this.#s.x509TtlMs), ca.notAfter),
        dnsNames,
        subject: req.subject,
      },
      ca.issuer,
    );
    return { certChain: [cert.der, ...ca.chainTail], expiresAt: Math.floor(cert.notAfter / 1000), serialNumber: cert.serialNumber };
  }

  signX509Svid(req: X509SvidRequest): X509SvidResult {
    const id = this.#checkId(req.spiffeId, 'X509-SVID');
    const problem = svidPublicKeyProblem(req.publicKey);
    if (problem) throw new ApiError(Code.INVALID_ARGUMENT, problem);
    return this.#issue(id, spkiOf(req.publicKey), req);
  }

  signX509SvidFromCsr(req: CsrSvidRequest): X509SvidResult {
    const csr = parseAndVerifyCsr(req.csrDer);
    const id = this.#checkId(req.spiffeId, 'X509-SVID');
    if (csr.uris.length > 0 && (csr.uris.length !== 1 || csr.uris[0] !== id)) {
      throw new ApiError(
        Code.INVALID_ARGUMENT,
        csr.uris.length === 1
          ? `CSR URI SAN "${csr.uris[0]}" does not match the expected SPIFFE ID "${id}"`
          : `CSR has ${csr.uris.length} URI SANs (${csr.uris.map((u) => `"${u}"`).join(', ')}); expected only "${id}"`,
      );
    }
    const problem = svidPublicKeyProblem(csr.publicKey);
    if (problem) throw new ApiError(Code.INVALID_ARGUMENT, problem);
    return this.#issue(id, csr.spkiDer, req);
  }

  signJwtSvid(req: JwtSvidRequest): JwtSvidResult {
    const sub = this.#checkId(req.spiffeId, 'JWT-SVID');
    const aud = req.audience.filter((a) => a !== '');
    if (aud.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'invalid JWT-SVID audience: cannot be empty');
    const now = this.#clock.now();
    const key = this.#state.jwtActive;
    if (now >= key.notAfter) {
      throw new ApiError(Code.UNAVAILABLE, `ca: the JWT key expired at ${new Date(key.notAfter).toISOString()} and has not been rotated`);
    }
    const iat = Math.floor(now / 1000);
    const exp = Math.floor(Math.min(now + ttlOrDefault(req.ttlMs, this.#s.jwtTtlMs), key.notAfter) / 1000);
    const token = signJwt(key.headerB64, { sub, aud, exp, iat, iss: this.#s.jwtIssuer }, key.key, key.alg);
    return { token, issuedAt: iat, expiresAt: exp };
  }

  bundle(): CaBundle {
    return this.#bundle;
  }

  issueServerIdentity(): ServerIdentity {
    const spiffeId = `spiffe://${this.trustDomain}/spire/server`;
    const { privateKey, publicKey } = generateP256();
    const svid = this.signX509Svid({ spiffeId, publicKey });
    return {
      spiffeId,
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      certChainPem: certificatesToPem(svid.certChain),
      certChainDer: svid.certChain,
      expiresAt: svid.expiresAt,
    };
  }

  nextRotationAt(): number {
    return nextRotationTime(this.#state);
  }

  status(): AuthorityStatus {
    const s = this.#state;
    const x509 = (slot: typeof s.x509Active, status: 'active' | 'prepared') => ({
      id: slot.issuer.subjectKeyId.toString('hex'),
      issuedAt: slot.issuedAt,
      notAfter: slot.notAfter,
      status,
      ...(slot.upstreamFingerprint !== undefined ? { upstreamFingerprint: slot.upstreamFingerprint } : {}),
    });
    const jwt = (slot: typeof s.jwtActive, status: 'active' | 'prepared') => ({ id: slot.kid, issuedAt: slot.issuedAt, notAfter: slot.notAfter, status });
    return {
      x509: s.x509Next ? [x509(s.x509Active, 'active'), x509(s.x509Next, 'prepared')] : [x509(s.x509Active, 'active')],
      jwt: s.jwtNext ? [jwt(s.jwtActive, 'active'), jwt(s.jwtNext, 'prepared')] : [jwt(s.jwtActive, 'active')],
    };
  }

  maybeRotate(): Promise<RotationResult> {
    return this.#serialized(() => this.#step({ force: false, replaceX509: false }));
  }

  rotate(): Promise<RotationResult> {
    return this.#serialized(() => this.#step({ force: true, replaceX509: false }));
  }

  /** Used once by `openCertificateAuthority`. */
  stepAtOpen(replaceX509: boolean): Promise<RotationResult> {
    return this.#serialized(() => this.#step({ force: false, replaceX509 }));
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #step(mode: RotationMode): Promise<RotationResult> {
    const now = this.#clock.now();
    const plan = await planRotation(this.#state, now, mode, this.#deps());
    if (!plan.changed) return plan.result;
    const sequenceNumber = this.#bundle.sequenceNumber + (plan.result.bundleChanged ? 1 : 0);
    await persistPlan(this.#store, this.trustDomain, plan, sequenceNumber);
    this.#state = plan.authorities;
    if (plan.result.bundleChanged) this.#bundle = this.#makeBundle(plan.authorities, sequenceNumber);
    for (const file of plan.droppedKeyFiles) await this.#store.removeKey(file);
    return plan.result;
  }

  #deps(): RotationDeps {
    return {
      prepareX509: async (now) => {
        const upstream = this.#s.upstream ? await loadDiskUpstream(this.#s.upstream, now) : undefined;
        const { slot, key } = newX509Ca({ trustDomain: this.trustDomain, now, ttlMs: this.#s.caTtlMs, subject: this.#s.caSubject, upstream, keyType: this.#s.caKeyType });
        return { slot, key, roots: upstream ? upstream.rootsDer : [slot.certDer] };
      },
      prepareJwt: (now) => newJwtKey(now, this.#s.caTtlMs, this.#s.jwtKeyType),
    };
  }
}

/**
 * Opens (or creates) the CA in `<dataDir>/ca/`. Reopening the same directory yields the same
 * roots and JWT keys, whatever `caKeyType`/`jwtKeyType` say now: as in SPIRE, a changed key
 * type applies from the next authority prepared (rotation), and each key signs with its own
 * algorithm, so nothing is re-keyed in place. When the stored CA is expired, or was signed differently from what
 * `upstream` now says (self-signed vs upstream, or another upstream certificate), a new CA is
 * minted and activated at once; old roots stay in the bundle until they expire.
 *
 * Errors: `INVALID_ARGUMENT` for bad options; `FAILED_PRECONDITION` naming the file for
 * unusable state, key or upstream files, or a data directory of another trust domain.
 */
export async function openCertificateAuthority(opts: CaOptions): Promise<CertificateAuthority> {
  const settings = settingsOf(opts);
  const { trustDomain, caTtlMs, caSubject, caKeyType, jwtKeyType } = settings;
  const store = new CaStore(opts.dataDir);
  const now = settings.clock.now();
  const upstream = settings.upstream ? await loadDiskUpstream(settings.upstream, now) : undefined;
  const opened = await openState(store, {
    trustDomain,
    now,
    create: () => {
      const { slot, key } = newX509Ca({ trustDomain, now, ttlMs: caTtlMs, subject: caSubject, upstream, keyType: caKeyType });
      return { x509: slot, x509Key: key, roots: upstream ? upstream.rootsDer : [slot.certDer], jwt: newJwtKey(now, caTtlMs, jwtKeyType) };
    },
  });
  const ca = new Authority(settings, store, opened.authorities, opened.sequenceNumber);
  await ca.stepAtOpen(opened.authorities.x509Active.upstreamFingerprint !== upstream?.fingerprint);
  return ca;
}
