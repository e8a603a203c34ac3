/** Loading the CA's authorities from the store, creating them the first time, and committing rotations. */
import type { KeyObject } from 'node:crypto';

import { ApiError, Code } from '../../common/errors.ts';
import { readCertificate } from '../../common/cert-reader.ts';
import type { Authorities, RotationPlan, Root } from './rotation.ts';
import { restoreJwtKey, restoreX509Ca, type JwtKeySlot, type X509CaSlot } from './slots.ts';
import type { CaStore, StoredJwtKey, StoredState, StoredX509Ca } from './store.ts';

/** Authorities minted for a brand-new CA directory. */
export interface InitialAuthorities {
  readonly x509: X509CaSlot;
  readonly x509Key: KeyObject;
  readonly roots: readonly Buffer[];
  readonly jwt: JwtKeySlot;
}

function toStoredX509(s: X509CaSlot): StoredX509Ca {
  return { id: s.id, keyFile: s.keyFile, issuedAt: s.issuedAt, certDer: s.certDer, chainDer: s.chainDer, upstreamFingerprint: s.upstreamFingerprint };
}

function toStoredJwt(s: JwtKeySlot): StoredJwtKey {
  return { kid: s.kid, keyFile: s.keyFile, issuedAt: s.issuedAt, notAfter: s.notAfter, publicKeyDer: s.publicKeyDer };
}

function toStored(trustDomain: string, a: Authorities, sequenceNumber: number): StoredState {
  return {
    trustDomain,
    sequenceNumber,
    x509Active: toStoredX509(a.x509Active),
    x509Next: a.x509Next ? toStoredX509(a.x509Next) : undefined,
    jwtActive: toStoredJwt(a.jwtActive),
    jwtNext: a.jwtNext ? toStoredJwt(a.jwtNext) : undefined,
    x509Authorities: a.roots.map((r) => r.der),
    jwtAuthorities: a.jwtAuthorities,
  };
}

function rootOf(der: Buffer, where: string): Root {
  try {
    return { der, notAfter: readCertificate(der).notAfter };
  } catch (err) {
    throw new ApiError(Code.FAILED_PRECONDITION, `ca: ${where} is corrupt: a bundle certificate does not parse: ${(err as Error).message}`);
  }
}

/**
 * Loads the stored authorities, or creates and commits new ones when the directory holds no
 * state yet. Removes key files left unreferenced by an interrupted write.
 */
export async function openState(
  store: CaStore,
  p: { trustDomain: string; now: number; create: () => InitialAuthorities },
): Promise<{ authorities: Authorities; sequenceNumber: number }> {
  await store.ensureDir();
  const where = store.path('state.json');
  const stored = await store.load();
  if (!stored) {
    await store.removeUnreferenced(new Set());
    const c = p.create();
    const authorities: Authorities = {
      x509Active: c.x509,
      x509Next: undefined,
      jwtActive: c.jwt,
      jwtNext: undefined,
      roots: c.roots.map((der) => rootOf(der, 'new CA')),
      jwtAuthorities: [{ keyId: c.jwt.kid, publicKey: c.jwt.publicKeyDer, expiresAt: Math.floor(c.jwt.notAfter / 1000) }],
    };
    await store.writeKey(c.x509.keyFile, c.x509Key);
    await store.writeKey(c.jwt.keyFile, c.jwt.key);
    await store.save(toStored(p.trustDomain, authorities, 1));
    return { authorities, sequenceNumber: 1 };
  }
  if (stored.trustDomain !== p.trustDomain) {
    throw new ApiError(
      Code.FAILED_PRECONDITION,
      `ca: ${store.dir} holds the CA of trust domain "${stored.trustDomain}", not "${p.trustDomain}"; use another data directory`,
    );
  }
  const x509 = async (s: StoredX509Ca): Promise<X509CaSlot> => restoreX509Ca(s, await store.readKey(s.keyFile), where);
  const jwt = async (s: StoredJwtKey): Promise<JwtKeySlot> => restoreJwtKey(s, await store.readKey(s.keyFile), where);
  const authorities: Authorities = {
    x509Active: await x509(stored.x509Active),
    x509Next: stored.x509Next ? await x509(stored.x509Next) : undefined,
    jwtActive: await jwt(stored.jwtActive),
    jwtNext: stored.jwtNext ? await jwt(stored.jwtNext) : undefined,
    roots: stored.x509Authorities.map((der) => rootOf(der, where)),
    jwtAuthorities: stored.jwtAuthorities,
  };
  const referenced = new Set([stored.x509Active.keyFile, stored.jwtActive.keyFile]);
  if (stored.x509Next) referenced.add(stored.x509Next.keyFile);
  if (stored.jwtNext) referenced.add(stored.jwtNext.keyFile);
  await store.removeUnreferenced(referenced);
  return { authorities, sequenceNumber: stored.sequenceNumber };
}

/** Commits a rotation: new key files first, then the state that references them. */
export async function persistPlan(store: CaStore, trustDomain: string, plan: RotationPlan, sequenceNumber: number): Promise<void> {
  for (const { file, key } of plan.newKeys) await store.writeKey(file, key);
  await store.save(toStored(trustDomain, plan.authorities, sequenceNumber));
}
