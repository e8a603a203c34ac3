/**
 * When to prepare and when to activate the next authority, as SPIRE's CA manager decides
 * (`pkg/server/ca/manager`): with lifetime = notAfter − issuedAt of the *active* authority,
 *
 * - prepare the next one at notAfter − min(lifetime / 2, 30 days): it goes into the bundle
 *   at once, so agents and workloads learn the new root (or JWT key) before anything is signed
 *   with it;
 * - activate it at notAfter − min(lifetime / 6, 7 days): from then on everything is signed
 *   with it. With the 24 h default that is prepare at 12 h, activate at 20 h.
 *
 * An SVID never outlives its signer (its notAfter is capped at the CA's), and an old root
 * stays in the bundle until its own notAfter, so nothing still valid ever loses its anchor.
 */
import type { KeyObject } from 'node:crypto';

import { readCertificate } from '../../common/cert-reader.ts';
import type { JwtKeySlot, X509CaSlot } from './slots.ts';
import type { JwtAuthority, RotationResult } from './types.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/** The preparation threshold cap (SPIRE: 30 days). */
export const PREPARATION_THRESHOLD_CAP_MS = 30 * DAY_MS;
/** The activation threshold cap (SPIRE: 7 days). */
export const ACTIVATION_THRESHOLD_CAP_MS = 7 * DAY_MS;

/** The time (ms) from which the successor of an authority should be prepared. */
export function preparationThreshold(issuedAt: number, notAfter: number): number {
  const lifetime = notAfter - issuedAt;
  return notAfter - Math.min(lifetime / 2, PREPARATION_THRESHOLD_CAP_MS);
}

/** The time (ms) from which the prepared successor should take over signing. */
export function activationThreshold(issuedAt: number, notAfter: number): number {
  const lifetime = notAfter - issuedAt;
  return notAfter - Math.min(lifetime / 6, ACTIVATION_THRESHOLD_CAP_MS);
}

/** A trust anchor in the bundle with its expiry (ms), kept to prune it on time. */
export interface Root {
  readonly der: Buffer;
  readonly notAfter: number;
}

/** The authorities a rotation step works on. */
export interface Authorities {
  readonly x509Active: X509CaSlot;
  readonly x509Next: X509CaSlot | undefined;
  readonly jwtActive: JwtKeySlot;
  readonly jwtNext: JwtKeySlot | undefined;
  readonly roots: readonly Root[];
  readonly jwtAuthorities: readonly JwtAuthority[];
}

/** How a rotation step mints new authorities. */
export interface RotationDeps {
  /** A new X.509 CA, its private key, and the roots to publish for it. */
  prepareX509(now: number): Promise<{ slot: X509CaSlot; key: KeyObject; roots: readonly Buffer[] }>;
  prepareJwt(now: number): JwtKeySlot;
}

/** What to do beyond the thresholds. */
export interface RotationMode {
  /** Activate a successor now (preparing one if needed), whatever the thresholds say. */
  readonly force: boolean;
  /** The active X.509 CA no longer fits the configuration (upstream changed): replace it now. */
  readonly replaceX509: boolean;
}

/** The outcome of a step: the new authorities, keys to persist first, key files to delete after. */
export interface RotationPlan {
  readonly authorities: Authorities;
  readonly newKeys: readonly { readonly file: string; readonly key: KeyObject }[];
  readonly droppedKeyFiles: readonly string[];
  readonly result: RotationResult;
  /** Anything at all changed (and must be persisted). */
  readonly changed: boolean;
}

/**
 * Computes one rotation step at `now`: replace an expired (or unfit) active authority, prepare
 * a successor at the preparation threshold, activate it at the activation threshold, and prune
 * bundle entries whose own expiry has passed. Pure apart from minting keys through `deps`.
 */
export async function planRotation(cur: Authorities, now: number, mode: RotationMode, deps: RotationDeps): Promise<RotationPlan> {
  let { x509Active, x509Next, jwtActive, jwtNext } = cur;
  const roots = [...cur.roots];
  const jwtAuthorities = [...cur.jwtAuthorities];
  const newKeys: { file: string; key: KeyObject }[] = [];
  const dropped: string[] = [];
  let bundleChanged = false;
  let slotsChanged = false;
  let x509CaActivated = false;
  let jwtKeyActivated = false;

  const prepareX509 = async (): Promise<X509CaSlot> => {
    const p = await deps.prepareX509(now);
    newKeys.push({ file: p.slot.keyFile, key: p.key });
    for (const der of p.roots) {
      if (!roots.some((r) => r.der.equals(der))) {
        roots.push({ der, notAfter: readCertificate(der).notAfter });
        bundleChanged = true;
      }
    }
    slotsChanged = true;
    return p.slot;
  };
  const activateX509 = (slot: X509CaSlot): void => {
    dropped.push(x509Active.keyFile);
    if (x509Next && x509Next !== slot) dropped.push(x509Next.keyFile);
    x509Active = slot;
    x509Next = undefined;
    x509CaActivated = true;
    slotsChanged = true;
  };
  const prepareJwt = (): JwtKeySlot => {
    const slot = deps.prepareJwt(now);
    newKeys.push({ file: slot.keyFile, key: slot.key });
    jwtAuthorities.push({ keyId: slot.kid, publicKey: slot.publicKeyDer, expiresAt: Math.floor(slot.notAfter / 1000) });
    bundleChanged = true;
    slotsChanged = true;
    return slot;
  };
  const activateJwt = (slot: JwtKeySlot): void => {
    dropped.push(jwtActive.keyFile);
    if (jwtNext && jwtNext !== slot) dropped.push(jwtNext.keyFile);
    jwtActive = slot;
    jwtNext = undefined;
    jwtKeyActivated = true;
    slotsChanged = true;
  };

  // X.509 CA.
  if (mode.replaceX509 || now >= x509Active.notAfter) {
    const usable = x509Next !== undefined && !mode.replaceX509 && now < x509Next.notAfter ? x509Next : undefined;
    activateX509(usable ?? (await prepareX509()));
  } else if (mode.force) {
    activateX509(x509Next ?? (await prepareX509()));
  } else {
    if (!x509Next && now >= preparationThreshold(x509Active.issuedAt, x509Active.notAfter)) x509Next = await prepareX509();
    if (x509Next && now >= activationThreshold(x509Active.issuedAt, x509Active.notAfter)) activateX509(x509Next);
  }

  // JWT key.
  if (now >= jwtActive.notAfter) {
    const usable = jwtNext !== undefined && now < jwtNext.notAfter ? jwtNext : undefined;
    activateJwt(usable ?? prepareJwt());
  } else if (mode.force) {
    activateJwt(jwtNext ?? prepareJwt());
  } else {
    if (!jwtNext && now >= preparationThreshold(jwtActive.issuedAt, jwtActive.notAfter)) jwtNext = prepareJwt();
    if (jwtNext && now >= activationThreshold(jwtActive.issuedAt, jwtActive.notAfter)) activateJwt(jwtNext);
  }

  // Prune what has expired: nothing valid can chain to it any more.
  const keptRoots = roots.filter((r) => r.notAfter > now);
  const keptJwt = jwtAuthorities.filter((a) => a.expiresAt * 1000 > now);
  if (keptRoots.length !== roots.length || keptJwt.length !== jwtAuthorities.length) bundleChanged = true;

  return {
    authorities: { x509Active, x509Next, jwtActive, jwtNext, roots: keptRoots, jwtAuthorities: keptJwt },
    newKeys,
    droppedKeyFiles: dropped,
    result: { bundleChanged, x509CaActivated, jwtKeyActivated },
    changed: bundleChanged || slotsChanged,
  };
}

/** The earliest time (ms) at which {@link planRotation} would change something. */
export function nextRotationTime(a: Authorities): number {
  const times = [a.x509Active.notAfter, a.jwtActive.notAfter];
  times.push(
    a.x509Next
      ? activationThreshold(a.x509Active.issuedAt, a.x509Active.notAfter)
      : preparationThreshold(a.x509Active.issuedAt, a.x509Active.notAfter),
  );
  times.push(
    a.jwtNext
      ? activationThreshold(a.jwtActive.issuedAt, a.jwtActive.notAfter)
      : preparationThreshold(a.jwtActive.issuedAt, a.jwtActive.notAfter),
  );
  for (const r of a.roots) times.push(r.notAfter);
  for (const j of a.jwtAuthorities) times.push(j.expiresAt * 1000);
  return Math.ceil(Math.min(...times));
}
