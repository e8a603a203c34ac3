/**
 * The agent's own X509-SVID and key, with what rotation and TLS need (PEM forms, validity).
 */
import type { KeyObject } from 'node:crypto';
import { readCertificate } from '../common/cert-reader.ts';
import { certificatesToPem } from '../common/pem.ts';
import { ApiError, Code } from '../common/errors.ts';
import { ChainVerifier } from '../common/chain-verify.ts';

/** The agent identity. Immutable. Times are milliseconds. */
export interface AgentSvid {
  readonly spiffeId: string;
  readonly certChain: readonly Buffer[];
  readonly key: KeyObject;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly reattestable: boolean;
  readonly certChainPem: string;
  readonly keyPem: string;
}

/** Builds an AgentSvid from a DER chain and its key. */
export function agentSvid(certChain: readonly Buffer[], key: KeyObject, reattestable: boolean): AgentSvid {
  const leafDer = certChain[0];
  if (leafDer === undefined) throw new ApiError(Code.INTERNAL, 'agent-svid: empty certificate chain');
  const leaf = readCertificate(leafDer);
  const spiffeId = leaf.uris[0];
  if (leaf.uris.length !== 1 || spiffeId === undefined) throw new ApiError(Code.INTERNAL, 'agent-svid: the agent SVID must have exactly one URI SAN');
  return {
    spiffeId,
    certChain,
    key,
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    reattestable,
    certChainPem: certificatesToPem(certChain),
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** Whether the SVID is still usable at `now` (SPIRE treats now+1s ≥ notAfter as expired). */
export function isUsable(svid: AgentSvid, now: number): boolean {
  return now + 1000 < svid.notAfter;
}

/**
 * Whether the SVID's chain is signed up to one of `roots` (DER): with tainted roots, whether
 * the SVID must be rotated at once (SPIRE's rotator does so; `x509util.IsSignedByRoot`).
 */
export function isSignedByAny(svid: AgentSvid, roots: readonly Buffer[]): boolean {
  return roots.length > 0 && new ChainVerifier(roots).verify(svid.certChain);
}
