/**
 * Our own admin service, `spiffenodeagent.admin.v1.AgentDebug` (proto/spiffe_node_agent/…):
 * `Explain` (why a process, a pod or selectors get the identities they get) and
 * `ListWorkloads` (who is connected to the Workload API now). Served on the admin socket only,
 * never on the Workload API socket.
 *
 * Who may call: local root (uid 0 by SO_PEERCRED), or a caller attested like any workload
 * whose entries include one of `authorized_delegates` (the Delegated Identity API's rule).
 * Anyone else: PermissionDenied. Explain reveals which selectors and entries exist on the node,
 * which a workload must not learn about its neighbours.
 */
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { loadProtos } from '../../common/proto.ts';
import type { Selector } from '../../common/selector.ts';
import type { ExplainRequest__Output } from '../../gen/spiffenodeagent/admin/v1/ExplainRequest.ts';
import type { ExplainResponse } from '../../gen/spiffenodeagent/admin/v1/ExplainResponse.ts';
import type { ExplainedEntry as ExplainedEntryMessage } from '../../gen/spiffenodeagent/admin/v1/ExplainedEntry.ts';
import type { TraceStep as TraceStepMessage } from '../../gen/spiffenodeagent/admin/v1/TraceStep.ts';
import type { ListWorkloadsResponse } from '../../gen/spiffenodeagent/admin/v1/ListWorkloadsResponse.ts';
import { explain, type ExplainedEntry, type ExplainSources, type ExplainTarget } from '../explain/explain.ts';
import { encodeResponse, serializerOf, withPassthroughSerializers, type EncodedMessage } from '../workload-api/encode.ts';
import { attestCaller } from '../workload-api/middleware.ts';
import type { CallerActivity } from '../workload-api/workload-activity.ts';
import type { TraceStep } from '../workload-attestation/workload-attestor.ts';
import { adminUnary, type AdminCall, type AdminRpcDeps } from './admin-rpc.ts';
import type { AdminService } from './admin-server.ts';
import { authorizeDelegate } from './delegate-checks.ts';

/** PermissionDenied for a caller that is neither root nor an authorized delegate. */
export const NOT_ALLOWED = 'debug API: only local root or an authorized delegate may use it';

/** What a connected process is, for the workloads list. */
export interface WorkloadFacts {
  /** Every process connected to the Workload API now, most recently active first. */
  list(): readonly CallerActivity[];
}

export interface AgentDebugOptions {
  readonly explainSources: ExplainSources;
  /** The caller's entries' SPIFFE IDs, for the delegate check (the cache manager's matchingEntries). */
  readonly matchingEntries: (selectors: readonly Selector[]) => readonly { readonly spiffeId: string }[];
  readonly authorizedDelegates: readonly string[];
  readonly workloads: WorkloadFacts;
  readonly logger: Logger;
}

const SERVICE = withPassthroughSerializers(loadProtos().spiffenodeagent.admin.v1.AgentDebug.service);
const serializer = (name: string): ((value: object) => Buffer) =>
  serializerOf(SERVICE[name] as unknown as { responseSerialize: (value: object) => Buffer }) as (value: object) => Buffer;
const encodeExplain = serializer('Explain');
const encodeWorkloads = serializer('ListWorkloads');

function steps(list: readonly TraceStep[]): TraceStepMessage[] {
  return list.map((s) => ({ name: s.name, duration_ms: s.durationMs, detail: Object.fromEntries(Object.entries(s.detail).map(([k, v]) => [k, String(v)])) }));
}

function entryMessage(e: ExplainedEntry): ExplainedEntryMessage {
  return {
    entry_id: e.entryId,
    spiffe_id: e.spiffeId,
    hint: e.hint,
    selectors: [...e.selectors],
    x509_svid_ttl: e.x509SvidTtl,
    jwt_svid_ttl: e.jwtSvidTtl,
    svid_expires_at: e.svidExpiresAt === undefined ? 0 : Date.parse(e.svidExpiresAt),
  };
}

/** The Explain request's target; InvalidArgument for an empty or malformed one. */
export function explainTarget(req: ExplainRequest__Output): ExplainTarget {
  switch (req.target) {
    case 'pid':
      if (req.pid === undefined || req.pid <= 0) throw new ApiError(Code.INVALID_ARGUMENT, 'debug explain: pid must be positive');
      return { pid: req.pid };
    case 'pod':
      if (req.pod === undefined || req.pod === null || req.pod.pod_uid === '') throw new ApiError(Code.INVALID_ARGUMENT, 'debug explain: pod_uid is required');
      return req.pod.container_name === '' ? { podUid: req.pod.pod_uid } : { podUid: req.pod.pod_uid, containerName: req.pod.container_name };
    case 'selectors': {
      const list = req.selectors?.selectors ?? [];
      if (list.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'debug explain: at least one selector is required');
      for (const s of list) {
        if (s.type === '' || s.type.includes(':') || s.value === '') throw new ApiError(Code.INVALID_ARGUMENT, `debug explain: malformed selector "${s.type}:${s.value}"`);
      }
      return { selectors: list.map((s) => ({ type: s.type, value: s.value })) };
    }
    default:
      throw new ApiError(Code.INVALID_ARGUMENT, 'debug explain: name a pid, a pod or selectors');
  }
}

/** The AgentDebug service for the admin server. */
export function agentDebugService(opts: AgentDebugOptions): AdminService {
  const authorized = new Set(opts.authorizedDelegates);
  const log = opts.logger;

  return (deps: AdminRpcDeps) => {
    /** Root passes at once; anyone else must attest as an authorized delegate. */
    const admit = async (call: AdminCall): Promise<void> => {
      const credentials = call.peer.credentials;
      if (credentials.kind === 'process' && credentials.uid === 0) return;
      let selectors: readonly Selector[];
      try {
        selectors = await attestCaller({ tracker: deps.tracker, attestor: opts.explainSources.attestor }, call.peer, call.signal);
      } catch (err) {
        log.warn({ caller_pid: call.pid, error: toApiError(err).message }, 'debug API: caller attestation failed');
        throw new ApiError(Code.PERMISSION_DENIED, NOT_ALLOWED);
      }
      const decision = authorizeDelegate(
        opts.matchingEntries(selectors).map((e) => e.spiffeId),
        authorized,
      );
      if (!decision.ok) {
        log.warn({ caller_pid: call.pid }, 'debug API: caller refused: not root, not an authorized delegate');
        throw new ApiError(Code.PERMISSION_DENIED, NOT_ALLOWED);
      }
    };

    return {
      definition: SERVICE,
      handlers: {
        Explain: adminUnary<ExplainRequest__Output>(deps, 'Explain', async (req, call): Promise<EncodedMessage> => {
          const target = explainTarget(req);
          await admit(call);
          const r = await explain(opts.explainSources, target, call.signal);
          const message: ExplainResponse = {
            pid: r.pid ?? 0,
            process: r.process === undefined ? null : { uid: r.process.uid, gid: r.process.gid, steps: steps(r.process.steps) },
            attestors: r.attestors.map((a) => ({
              plugin: a.plugin,
              duration_ms: a.durationMs,
              selectors: (a.selectors ?? []).map((s) => ({ type: s.type, value: s.value })),
              failed: a.error !== undefined,
              error_code: a.error?.code ?? 0,
              error_message: a.error?.message ?? '',
              steps: steps(a.steps),
            })),
            selectors: [...r.selectors],
            matched: r.matched.map(entryMessage),
            matched_store_svid: r.matchedStoreSvid.map(entryMessage),
            near_misses: r.nearMisses.map((m) => ({ entry: entryMessage(m.entry), missing: m.missing.map((x) => ({ wanted: x.wanted, found: [...x.found] })) })),
            more_near_misses: r.moreNearMisses,
            verdict: { code: r.verdict.code, code_name: r.verdict.codeName, message: r.verdict.message },
          };
          return encodeResponse(encodeExplain, message) as EncodedMessage;
        }),
        ListWorkloads: adminUnary(deps, 'ListWorkloads', async (_req, call): Promise<EncodedMessage> => {
          await admit(call);
          const message: ListWorkloadsResponse = {
            workloads: opts.workloads.list().map((w) => {
              const k8s = (name: string): string => w.selectors.find((s) => s.type === 'k8s' && s.value.startsWith(`${name}:`))?.value.slice(name.length + 1) ?? '';
              const ns = k8s('ns');
              const podName = k8s('pod-name');
              const group = w.group ?? '';
              return {
                pid: w.pid,
                uid: w.uid,
                gid: w.gid,
                pod_uid: group.startsWith('pod:') ? group.slice(4) : '',
                container_id: group.startsWith('container:') ? group.slice(10) : '',
                pod: ns !== '' && podName !== '' ? `${ns}/${podName}` : '',
                container_name: k8s('container-name'),
                selectors: w.selectors.map((s) => `${s.type}:${s.value}`),
                spiffe_ids: [...w.spiffeIds],
                svid_expiries: w.spiffeIds.map((id, i) => ({ spiffe_id: id, expires_at: w.svidExpiries[i] ?? 0 })),
                connections: w.connections,
                open_streams: w.openStreams,
                calls: w.calls,
                last_attestation_ms: w.lastAttestationMs ?? 0,
                bytes_sent: w.bytesSent,
                connected_at: w.connectedAt,
                last_activity_at: w.lastActivityAt,
              };
            }),
            taken_at: Date.now(),
          };
          return encodeResponse(encodeWorkloads, message) as EncodedMessage;
        }),
      },
    };
  };
}
