/**
 * The Delegated Identity API (`spire.api.agent.delegatedidentity.v1.DelegatedIdentity`), as
 * SPIRE's `pkg/agent/api/delegatedidentity/v1/service.go` behaves:
 *
 * - The caller is attested like any workload (its PID from the connection's credentials, then
 *   the PID-reuse check), and one of the entries it matches must have a SPIFFE ID listed in
 *   `authorized_delegates`: otherwise PermissionDenied "no identity issued" (no entry) or
 *   "caller not configured as an authorized delegate". Any attestation failure is Internal
 *   "workload attestation failed". On streams the decision is taken again, with the caller's
 *   selectors from the start, before every update: a delegate whose entry is deleted (or no
 *   longer authorized) has its streams ended with PermissionDenied at the next update.
 * - The workload is named by selectors (trusted as given) or by PID (attested with the
 *   agent's workload attestors; a PID no attestor can read has no selectors, so it gets an
 *   empty list, as in SPIRE). The delegate must make sure the PID is not reused meanwhile.
 * - X509-SVIDs of admin and downstream entries are never handed out.
 */
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { loadProtos } from '../../common/proto.ts';
import type { Selector } from '../../common/selector.ts';
import type { FetchJWTSVIDsRequest__Output } from '../../gen/spire/api/agent/delegatedidentity/v1/FetchJWTSVIDsRequest.ts';
import type { SubscribeToX509SVIDsRequest__Output } from '../../gen/spire/api/agent/delegatedidentity/v1/SubscribeToX509SVIDsRequest.ts';
import type { BundleSnapshot, JwtIdentity, WorkloadState } from '../manager/workload-state.ts';
import { encodeResponse, serializerOf, withPassthroughSerializers, type EncodedMessage } from '../workload-api/encode.ts';
import { attestCaller } from '../workload-api/middleware.ts';
import type { StreamSession } from '../workload-api/stream-session.ts';
import type { WorkloadAttestor } from '../workload-attestation/workload-attestor.ts';
import { adminStream, adminUnary, type AdminCall, type AdminRpcDeps } from './admin-rpc.ts';
import type { AdminService } from './admin-server.ts';
import { authorizeDelegate, delegateTarget, NO_IDENTITY_ISSUED, requireAudience } from './delegate-checks.ts';
import { jwtBundlesMap, jwtSvidMessage, x509BundlesMap, x509SvidsResponse } from './delegated-responses.ts';

/** An entry as the delegated API needs it. */
export interface DelegateEntry {
  readonly id: string;
  readonly spiffeId: string;
  readonly admin?: boolean;
  readonly downstream?: boolean;
}

/** What the Delegated Identity API uses from the cache manager (which satisfies it structurally). */
export interface DelegatedIdentitySource {
  /** As IdentitySource.subscribe: the workload's full state at once, then after every change. */
  subscribe(selectors: readonly Selector[], listener: (state: WorkloadState) => void): () => void;
  /** JWT-SVIDs of every entry the selectors match. */
  fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], signal: AbortSignal): Promise<JwtIdentity[]>;
  /** The bundles at once, then after every change. */
  subscribeBundles(listener: (bundles: BundleSnapshot) => void): () => void;
  /** Every entry the selectors match (SVID cached or not), sorted by entry ID. */
  matchingEntries(selectors: readonly Selector[]): readonly DelegateEntry[];
  /**
   * Whether the entries come from a sync with the server. Entries restored from the workload
   * cache file do not say which are admin or downstream entries, so X509-SVIDs are not handed
   * out until the first sync.
   */
  readonly synced: boolean;
}

/** Options of {@link delegatedIdentityService}. */
export interface DelegatedIdentityOptions {
  readonly source: DelegatedIdentitySource;
  readonly attestor: WorkloadAttestor;
  /** SPIFFE IDs allowed to use the API (`authorized_delegates`). */
  readonly authorizedDelegates: readonly string[];
  readonly logger: Logger;
}

const protos = loadProtos();
const SERVICE = withPassthroughSerializers(protos.spire.api.agent.delegatedidentity.v1.DelegatedIdentity.service);
const method = (name: string): { responseSerialize: (value: object) => Buffer } => SERVICE[name] as unknown as { responseSerialize: (value: object) => Buffer };
const encodeX509Svids = serializerOf(method('SubscribeToX509SVIDs'));
const encodeX509Bundles = serializerOf(method('SubscribeToX509Bundles'));
const encodeJwtSvids = serializerOf(method('FetchJWTSVIDs'));
const encodeJwtBundles = serializerOf(method('SubscribeToJWTBundles'));

/** The Delegated Identity service for the admin server. */
export function delegatedIdentityService(opts: DelegatedIdentityOptions): AdminService {
  const authorized = new Set(opts.authorizedDelegates);
  const log = opts.logger;

  return (deps: AdminRpcDeps) => {
    /** Attests the caller (SPIRE: any failure is Internal "workload attestation failed"). */
    const callerSelectors = async (call: AdminCall): Promise<readonly Selector[]> => {
      try {
        return await attestCaller({ tracker: deps.tracker, attestor: opts.attestor }, call.peer, call.signal);
      } catch (err) {
        if (call.signal.aborted) throw new ApiError(Code.CANCELLED, 'admin api: call cancelled during attestation');
        log.error({ caller_pid: call.pid, error: toApiError(err).message }, 'Workload attestation failed');
        throw new ApiError(Code.INTERNAL, 'workload attestation failed');
      }
    };

    /** Throws PermissionDenied unless a caller with these selectors is an authorized delegate. */
    const authorize = (call: AdminCall, selectors: readonly Selector[], first: boolean): void => {
      const decision = authorizeDelegate(
        opts.source.matchingEntries(selectors).map((e) => e.spiffeId),
        authorized,
      );
      if (decision.ok) {
        if (first) log.debug({ caller_pid: call.pid, delegate_id: decision.delegateId }, 'Caller authorized as delegate');
        return;
      }
      log.error(
        { caller_pid: call.pid, num_registered_entries: decision.entries, default_id: decision.defaultId },
        decision.entries === 0 ? 'no identity issued' : 'Permission denied; caller not configured as an authorized delegate.',
      );
      throw decision.error;
    };

    /** Attests and authorizes the caller; returns its selectors for the checks of later updates. */
    const admitDelegate = async (call: AdminCall): Promise<readonly Selector[]> => {
      const selectors = await callerSelectors(call);
      authorize(call, selectors, true);
      return selectors;
    };

    /** The selectors of the workload a request names. */
    const targetSelectors = async (call: AdminCall, selectors: readonly { type: string; value: string }[], pid: number): Promise<readonly Selector[]> => {
      const target = delegateTarget(selectors, pid);
      if (target.kind === 'selectors') return target.selectors;
      try {
        return await opts.attestor.attest(target.pid, call.signal);
      } catch (err) {
        if (call.signal.aborted) throw new ApiError(Code.CANCELLED, 'admin api: call cancelled during attestation');
        // SPIRE's attestor logs each plugin's failure and returns the selectors it has: none.
        log.warn({ caller_pid: call.pid, pid: target.pid, error: toApiError(err).message }, 'Failed to collect all selectors for PID');
        return [];
      }
    };

    /** Subscribes the stream to the workload's state until it ends (the listener may run inside subscribe). */
    const subscribe = (session: StreamSession, selectors: readonly Selector[], onState: (state: WorkloadState) => void): void => {
      let unsubscribe: () => void;
      try {
        unsubscribe = opts.source.subscribe(selectors, (state) => {
          if (!session.ended) onState(state);
        });
      } catch (err) {
        session.fail(err);
        return;
      }
      session.onEnd(unsubscribe);
    };

    const subscribeToX509Svids = async (session: StreamSession, call: AdminCall, request: SubscribeToX509SVIDsRequest__Output): Promise<void> => {
      const caller = await admitDelegate(call);
      if (!opts.source.synced) throw new ApiError(Code.UNAVAILABLE, 'agent is not ready: it has not synchronized with the server yet');
      const selectors = await targetSelectors(call, request.selectors, request.pid);
      if (session.ended) return;
      log.debug({ caller_pid: call.pid, request_selectors: selectors.length }, 'Subscribing to cache changes');
      subscribe(session, selectors, (state) => {
        try {
          authorize(call, caller, false);
        } catch (err) {
          session.fail(err);
          return;
        }
        const withheld = new Set(
          opts.source
            .matchingEntries(selectors)
            .filter((e) => e.admin === true || e.downstream === true)
            .map((e) => e.id),
        );
        session.send(encodeResponse(encodeX509Svids, x509SvidsResponse(state, withheld)) as EncodedMessage);
      });
    };

    /** Streams an encoding of every bundle change, re-authorizing before each one after the first. */
    const bundleStream = (encode: (bundles: BundleSnapshot) => EncodedMessage) =>
      async (session: StreamSession, call: AdminCall): Promise<void> => {
        const caller = await admitDelegate(call);
        if (session.ended) return;
        let last: EncodedMessage | undefined;
        let unsubscribe: () => void;
        try {
          unsubscribe = opts.source.subscribeBundles((bundles) => {
            if (session.ended) return;
            if (last !== undefined) {
              try {
                authorize(call, caller, false);
              } catch (err) {
                session.fail(err);
                return;
              }
            }
            const bytes = encode(bundles);
            // A change of the other kind of bundle leaves this one's content as it was.
            if (last !== undefined && last.equals(bytes)) return;
            last = bytes;
            session.send(bytes);
          });
        } catch (err) {
          session.fail(err);
          return;
        }
        session.onEnd(unsubscribe);
      };

    const fetchJwtSvids = async (request: FetchJWTSVIDsRequest__Output, call: AdminCall): Promise<EncodedMessage> => {
      requireAudience(request.audience);
      await admitDelegate(call);
      const selectors = await targetSelectors(call, request.selectors, request.pid);
      let svids: JwtIdentity[];
      try {
        svids = await opts.source.fetchJwtSvids(selectors, request.audience, call.signal);
      } catch (err) {
        const apiError = toApiError(err);
        if (apiError.code === Code.CANCELLED) throw apiError;
        log.error({ caller_pid: call.pid, error: apiError.message }, 'Could not fetch JWT-SVID');
        throw new ApiError(Code.UNAVAILABLE, `could not fetch JWT-SVID: ${apiError.message}`);
      }
      if (svids.length === 0) throw new ApiError(Code.PERMISSION_DENIED, NO_IDENTITY_ISSUED);
      return encodeResponse(encodeJwtSvids, { svids: svids.map(jwtSvidMessage) }) as EncodedMessage;
    };

    return {
      definition: SERVICE,
      handlers: {
        SubscribeToX509SVIDs: adminStream<SubscribeToX509SVIDsRequest__Output>(deps, 'SubscribeToX509SVIDs', subscribeToX509Svids),
        SubscribeToX509Bundles: adminStream(deps, 'SubscribeToX509Bundles', bundleStream((b) => encodeResponse(encodeX509Bundles, { ca_certificates: x509BundlesMap(b) }) as EncodedMessage)),
        FetchJWTSVIDs: adminUnary<FetchJWTSVIDsRequest__Output>(deps, 'FetchJWTSVIDs', fetchJwtSvids),
        SubscribeToJWTBundles: adminStream(deps, 'SubscribeToJWTBundles', bundleStream((b) => encodeResponse(encodeJwtBundles, { bundles: jwtBundlesMap(b) }) as EncodedMessage)),
      },
    };
  };
}
