/**
 * join_token node attestation, agent side: the payload is the operator-issued token.
 * Tokens are single-use, so a join_token agent renews its SVID with RenewAgent.
 */
import { ApiError, Code } from '../../common/errors.ts';
import type { NodeAttestor } from './node-attestor.ts';

/** Creates the join_token attestor for a token. */
export function joinTokenAttestor(token: string): NodeAttestor {
  if (token.trim() === '') throw new ApiError(Code.INVALID_ARGUMENT, 'join_token: the join token is empty');
  return {
    type: 'join_token',
    reattestable: false,
    payload: async () => Buffer.from(token.trim(), 'utf8'),
  };
}
