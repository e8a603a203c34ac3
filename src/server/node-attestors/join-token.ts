/**
 * join_token node attestation: a single-use, expiring token created by an operator
 * (`spiffe-server token generate`). The agent ID embeds the token, as in SPIRE.
 */
import { ApiError, Code } from '../../common/errors.ts';
import type { Clock } from '../../common/clock.ts';
import type { NodeAttestationResult, NodeAttestor } from './node-attestor.ts';

/** The narrow slice of the datastore this attestor needs. */
export interface JoinTokenStore {
  consumeJoinToken(token: string, nowSeconds: number): 'ok' | 'unknown' | 'expired';
}

export interface JoinTokenAttestorOptions {
  trustDomain: string;
  store: JoinTokenStore;
  clock: Clock;
}

/** Creates the join_token attestor. */
export function createJoinTokenAttestor(opts: JoinTokenAttestorOptions): NodeAttestor {
  return {
    type: 'join_token',
    async attest(payload: Buffer): Promise<NodeAttestationResult> {
      const token = payload.toString('utf8');
      if (token === '') throw new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: join token is empty');
      if (!/^[A-Za-z0-9._-]+$/.test(token)) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: join token has invalid characters');
      }
      // Consuming is one transaction: a token works exactly once, even under concurrent attempts.
      const outcome = opts.store.consumeJoinToken(token, Math.floor(opts.clock.now() / 1000));
      if (outcome === 'unknown') {
        throw new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: join token does not exist or has already been used');
      }
      if (outcome === 'expired') throw new ApiError(Code.INVALID_ARGUMENT, 'join token expired');
      return {
        agentId: `spiffe://${opts.trustDomain}/spire/agent/join_token/${token}`,
        selectors: [],
        canReattest: false,
      };
    },
  };
}
