/**
 * A Kubernetes service-account token issuer for tests: a generated signing key that mints
 * projected service-account tokens (real JWTs with the real claim layout) and authenticates
 * them the way kube-apiserver's service-account authenticator does for a TokenReview:
 * issuer, signature, audience, expiry (go-jose's 60 s leeway), then the bound pod.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, compactVerify, decodeJwt } from 'jose';

/** What a minted token binds to. */
export interface PsatSubject {
  namespace: string;
  serviceAccount: { name: string; uid: string };
  pod: { name: string; uid: string };
  node?: { name: string; uid: string };
}

/** Variations of a minted token. */
export interface TokenOptions {
  audiences?: string[];
  /** Lifetime from `issuedAt`. Default 7200 s, as the SPIRE DaemonSet's projected volume. */
  expirationSeconds?: number;
  /** Unix seconds. Default now. */
  issuedAt?: number;
  issuer?: string;
  /** Sign with a key the apiserver does not know (a bad signature). */
  foreignKey?: boolean;
  /** Override the bound pod UID (a token from a previous incarnation of the pod). */
  podUid?: string;
}

/** `status` of an authentication.k8s.io/v1 TokenReview, as the apiserver fills it. */
export type TokenReviewStatusBody = Record<string, unknown>;

export interface PsatIssuer {
  readonly issuer: string;
  mint(subject: PsatSubject, opts?: TokenOptions): Promise<string>;
  /**
   * Authenticates a token for a TokenReview with `spec.audiences` = `requested` (empty: the
   * apiserver's own audience, its issuer). `boundPodUid` looks up the live pod's UID, or
   * is undefined to skip the bound-object check.
   */
  review(token: string, requested: string[], boundPodUid?: (namespace: string, name: string) => string | undefined): Promise<TokenReviewStatusBody>;
}

type Claims = { namespace: string; pod?: { name: string; uid: string }; serviceaccount: { name: string; uid: string }; node?: { name: string; uid: string } };

function keyPair(alg: 'RS256' | 'ES256'): { privateKey: KeyObject; publicKey: KeyObject } {
  return alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Creates an issuer with a fresh key (RS256 by default, kube's usual key type). */
export function createPsatIssuer(opts: { issuer?: string; alg?: 'RS256' | 'ES256' } = {}): PsatIssuer {
  const alg = opts.alg ?? 'RS256';
  const issuer = opts.issuer ?? 'https://kubernetes.default.svc.cluster.local';
  const signer = keyPair(alg);
  const foreign = keyPair(alg);
  const kid = randomUUID();

  return {
    issuer,
    mint(subject, o = {}) {
      const iat = o.issuedAt ?? Math.floor(Date.now() / 1000);
      const claims: Claims = {
        namespace: subject.namespace,
        pod: { name: subject.pod.name, uid: o.podUid ?? subject.pod.uid },
        serviceaccount: subject.serviceAccount,
        ...(subject.node === undefined ? {} : { node: subject.node }),
      };
      return new SignJWT({ 'kubernetes.io': claims })
        .setProtectedHeader({ alg, kid })
        .setIssuer(o.issuer ?? issuer)
        .setSubject(`system:serviceaccount:${subject.namespace}:${subject.serviceAccount.name}`)
        .setAudience(o.audiences ?? ['spire-server'])
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + (o.expirationSeconds ?? 7200))
        .setJti(randomUUID())
        .sign(o.foreignKey === true ? foreign.privateKey : signer.privateKey);
    },

    async review(token, requested, boundPodUid) {
      const unauthenticated = (error: string): TokenReviewStatusBody => ({ authenticated: false, user: {}, error });
      let claims: ReturnType<typeof decodeJwt>;
      try {
        claims = decodeJwt(token);
      } catch {
        return unauthenticated('invalid bearer token');
      }
      // Not our issuer: the service-account authenticator does not recognise the token at all.
      if (claims.iss !== issuer) return unauthenticated('invalid bearer token');
      try {
        // Signature only: audience and time are checked below, in the apiserver's order.
        await compactVerify(token, signer.publicKey, { algorithms: [alg] });
      } catch {
        return unauthenticated('[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]');
      }
      const tokenAuds = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
      const wanted = requested.length > 0 ? requested : [issuer];
      const auds = wanted.filter((a) => tokenAuds.includes(a));
      if (auds.length === 0) {
        return unauthenticated(`[invalid bearer token, token audiences ${JSON.stringify(tokenAuds)} is invalid for the target audiences ${JSON.stringify(wanted)}]`);
      }
      const now = Math.floor(Date.now() / 1000);
      const leeway = 60;
      if (typeof claims.exp === 'number' && now > claims.exp + leeway) return unauthenticated('[invalid bearer token, service account token has expired]');
      if (typeof claims.nbf === 'number' && now < claims.nbf - leeway) return unauthenticated('[invalid bearer token, service account token is not valid yet]');
      const k8s = claims['kubernetes.io'] as Claims | undefined;
      if (k8s === undefined) return unauthenticated('[invalid bearer token, service account token claims could not be validated]');
      // A deleted or recreated pod invalidates its tokens.
      if (boundPodUid !== undefined && k8s.pod !== undefined && boundPodUid(k8s.namespace, k8s.pod.name) !== k8s.pod.uid) {
        return unauthenticated('[invalid bearer token, service account token has been invalidated]');
      }
      const extra: Record<string, string[]> = {};
      if (k8s.pod !== undefined) {
        extra['authentication.kubernetes.io/pod-name'] = [k8s.pod.name];
        extra['authentication.kubernetes.io/pod-uid'] = [k8s.pod.uid];
      }
      if (k8s.node !== undefined) {
        extra['authentication.kubernetes.io/node-name'] = [k8s.node.name];
        extra['authentication.kubernetes.io/node-uid'] = [k8s.node.uid];
      }
      if (typeof claims.jti === 'string') extra['authentication.kubernetes.io/credential-id'] = [`JTI=${claims.jti}`];
      return {
        authenticated: true,
        user: {
          username: `system:serviceaccount:${k8s.namespace}:${k8s.serviceaccount.name}`,
          uid: k8s.serviceaccount.uid,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${k8s.namespace}`, 'system:authenticated'],
          extra,
        },
        audiences: auds,
      };
    },
  };
}
