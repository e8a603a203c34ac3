/**
 * FetchX509SVID (server stream): subscribe the attested caller to the identity source and
 * send the full response on every notification, without de-duplication (SPIRE sends every
 * update). No identity, at the start or later, ends the stream with
 * PermissionDenied "no identity issued". The bytes come from a per-state cache, so workloads
 * sharing a selector set share one serialization. Responses are never refused for their
 * size; those over the default client receive limit are logged (large-response.ts).
 */
import type { IdentitySource } from '../identity-source.ts';
import type { LargeResponseLog } from '../large-response.ts';
import type { Caller } from '../rpc.ts';
import { subscribeSession, type StreamSession } from '../stream-session.ts';
import { encodedX509SvidResponse } from '../x509-svid-response.ts';
import type { WorkloadActivity } from '../workload-activity.ts';

/** The stream body of FetchX509SVID. */
export function fetchX509Svid(source: IdentitySource, largeResponses: LargeResponseLog, activity?: WorkloadActivity): (session: StreamSession, caller: Caller) => void {
  return (session, caller) => {
    subscribeSession(source, session, caller.selectors, (state) => {
      const outcome = encodedX509SvidResponse(state);
      if (!outcome.ok) {
        session.fail(outcome.error);
        return;
      }
      largeResponses.check({ method: 'FetchX509SVID', pid: caller.pid, bytes: outcome.bytes.length, counts: () => ({ svids: outcome.svids }) });
      activity?.served(caller.pid, state.identities);
      session.send(outcome.bytes);
    });
  };
}
