/**
 * When to renew a certificate or token: once its remaining life falls under a random
 * 45–55 % of its lifetime (SPIRE's rotationutil), re-drawn at every check so a fleet of
 * agents does not renew in lockstep. Pure: time and randomness are arguments.
 */

/** A uniform draw in [0.45, 0.55) from a [0, 1) random number. */
export function rotationFraction(random: number): number {
  return 0.45 + random * 0.1;
}

/**
 * Whether something valid from `notBefore` to `notAfter` (any unit, same as `now`) should
 * be renewed at `now`. Expired or lifetime-less items always should.
 */
export function shouldRotate(now: number, notBefore: number, notAfter: number, random: number): boolean {
  const remaining = notAfter - now;
  const lifetime = notAfter - notBefore;
  if (remaining <= 0 || lifetime <= 0) return true;
  return remaining <= rotationFraction(random) * lifetime;
}

/** The latest time at which shouldRotate may first become true (for scheduling a check). */
export function latestRotationTime(notBefore: number, notAfter: number): number {
  return notAfter - 0.45 * (notAfter - notBefore);
}
