/**
 * FetchX509Bundles and FetchJWTBundles (server streams), SPIRE semantics:
 * - a caller without an identity gets PermissionDenied "no identity issued" (at any point),
 *   unless the agent allows unauthenticated verifiers;
 * - a message is sent only when its content differs from the last one sent on this stream
 *   (compared as serialized bytes, which are deterministic: see bundle-responses.ts).
 */
import { bundleCount } from '../bundle-responses.ts';
import type { EncodedMessage } from '../encode.ts';
import type { WorkloadState } from '../../manager/workload-state.ts';
import type { IdentitySource } from '../identity-source.ts';
import type { LargeResponseLog } from '../large-response.ts';
import type { Caller } from '../rpc.ts';
import { subscribeSession, type StreamSession } from '../stream-session.ts';
import { noIdentityIssued } from '../x509-svid-response.ts';

/** Options shared by both bundle streams. */
export interface BundleStreamOptions {
  readonly source: IdentitySource;
  /** Where responses over the default client receive limit are reported. */
  readonly largeResponses: LargeResponseLog;
  /** SPIRE's allow_unauthenticated_verifiers: serve bundles to callers without an identity. */
  readonly allowUnauthenticatedVerifiers: boolean;
}

/** The stream body of a bundle RPC, given how a state becomes response bytes. */
export function fetchBundles(
  opts: BundleStreamOptions,
  method: string,
  encode: (state: WorkloadState) => EncodedMessage,
): (session: StreamSession, caller: Caller) => void {
  return (session, caller) => {
    let previous: EncodedMessage | undefined;
    subscribeSession(opts.source, session, caller.selectors, (state) => {
      if (state.identities.length === 0 && !opts.allowUnauthenticatedVerifiers) {
        session.fail(noIdentityIssued());
        return;
      }
      let bytes: EncodedMessage;
      try {
        bytes = encode(state);
      } catch (err) {
        session.fail(err);
        return;
      }
      if (previous !== undefined && (previous === bytes || previous.equals(bytes))) return;
      previous = bytes;
      opts.largeResponses.check({ method, pid: caller.pid, bytes: bytes.length, counts: () => ({ bundles: bundleCount(state) }) });
      session.send(bytes);
    });
  };
}
