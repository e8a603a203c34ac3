/**
 * The version and nonce state machine of one StreamSecrets stream, as SPIRE's SDS v3 handler
 * runs it. Pure: requests and workload states go in, the response to send (or the status that
 * ends the stream) and what to log come out. Nonces come from an injected generator.
 *
 * Rules:
 * - Nothing is sent until the client has asked and the first workload state has arrived.
 * - Once a response was sent, a request must carry its nonce: one with another nonce is stale
 *   and ignored whole (an Envoy answering an older response).
 * - A request whose version is not the one last sent is a NACK (logged); it is not answered
 *   by resending that version. A request without a node keeps the node last seen.
 * - A request is answered only when its resource names differ (as a set) from the previous
 *   request's; an ACK with the same names is not answered.
 * - A new workload state is pushed with the next version, to the last request's names. One
 *   that changes nothing the client asked for is not sent, and the version stays (SPIRE bumps
 *   and resends on every cache notification; ours notify on any bundle change, JWT keys
 *   included, so equal content is held back instead).
 * - A request the workload is not entitled to ends the stream with InvalidArgument.
 */
import type { ApiError } from '../../common/errors.ts';
import type { Node__Output } from '../../gen/envoy/config/core/v3/Node.ts';
import type { DiscoveryRequest__Output } from '../../gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { WorkloadState } from '../manager/workload-state.ts';
import type { SdsConfig } from './sds-config.ts';
import { buildSecrets, type BuiltSecret } from './secrets.ts';

/** A response to send on the stream. */
export interface SecretsResponse {
  readonly version_info: string;
  readonly resources: ReadonlyArray<BuiltSecret['resource']>;
  readonly type_url: string;
  readonly nonce: string;
}

/** Something worth logging about a request. */
export type StreamNote =
  | { readonly kind: 'nack'; readonly error: string; readonly resourceNames: readonly string[] }
  | { readonly kind: 'rolled-back'; readonly version: string; readonly expected: string }
  | { readonly kind: 'stale-nonce'; readonly nonce: string; readonly expected: string };

/** What the stream does next. */
export type StreamStep =
  | { readonly kind: 'none'; readonly notes: readonly StreamNote[] }
  | { readonly kind: 'send'; readonly response: SecretsResponse; readonly names: readonly string[]; readonly notes: readonly StreamNote[] }
  | { readonly kind: 'fail'; readonly error: ApiError; readonly notes: readonly StreamNote[] };

/** Options of {@link SecretStreamState}. */
export interface SecretStreamOptions {
  readonly config: SdsConfig;
  /** A fresh nonce per response (SPIRE: 4 random bytes in hex). */
  readonly nonce: () => string;
}

interface Subscription {
  readonly resourceNames: readonly string[];
  readonly node: Node__Output | null;
  readonly typeUrl: string;
}

/** Whether two resource name lists differ as sets (SPIRE's subListChanged). */
export function resourceNamesChanged(previous: readonly string[], next: readonly string[]): boolean {
  if (previous.length !== next.length) return true;
  const seen = new Set(previous);
  return next.some((name) => !seen.has(name));
}

function sameResources(a: readonly BuiltSecret[] | undefined, b: readonly BuiltSecret[]): boolean {
  return a !== undefined && a.length === b.length && a.every((secret, i) => secret.resource.value.equals((b[i] as BuiltSecret).resource.value));
}

/** One stream's state; see the module comment for its rules. */
export class SecretStreamState {
  readonly #opts: SecretStreamOptions;
  #counter = 0;
  #lastNonce = '';
  #lastNode: Node__Output | null = null;
  #subscription: Subscription | undefined;
  #state: WorkloadState | undefined;
  #lastSent: readonly BuiltSecret[] | undefined;

  constructor(opts: SecretStreamOptions) {
    this.#opts = opts;
  }

  /** The version of the latest state (`"0"` before any). */
  get version(): string {
    return String(this.#counter);
  }

  /** Takes a request from the client. */
  request(req: DiscoveryRequest__Output): StreamStep {
    const notes: StreamNote[] = [];
    if (req.error_detail !== null && req.error_detail !== undefined) {
      notes.push({ kind: 'nack', error: req.error_detail.message, resourceNames: req.resource_names });
    }
    let node = req.node ?? null;
    if (this.#lastNonce !== '') {
      if (req.response_nonce !== this.#lastNonce) {
        notes.push({ kind: 'stale-nonce', nonce: req.response_nonce, expected: this.#lastNonce });
        return { kind: 'none', notes };
      }
      if (req.version_info === '' || req.version_info !== this.version) {
        notes.push({ kind: 'rolled-back', version: req.version_info, expected: this.version });
      }
      node ??= this.#lastNode;
    }
    const changed = this.#subscription === undefined || resourceNamesChanged(this.#subscription.resourceNames, req.resource_names);
    this.#subscription = { resourceNames: req.resource_names, node, typeUrl: req.type_url };
    if (!changed || this.#state === undefined) return { kind: 'none', notes };
    return this.#respond(this.#subscription, this.#state, notes, undefined);
  }

  /** Takes a new workload state. */
  update(state: WorkloadState): StreamStep {
    if (state === this.#state) return { kind: 'none', notes: [] };
    this.#state = state;
    const subscription = this.#subscription;
    if (subscription === undefined) {
      this.#counter++;
      return { kind: 'none', notes: [] };
    }
    return this.#respond(subscription, state, [], this.#counter + 1);
  }

  /** Builds the response; `bump` is the version to move to if the content changed. */
  #respond(subscription: Subscription, state: WorkloadState, notes: StreamNote[], bump: number | undefined): StreamStep {
    const built = buildSecrets(state, subscription, this.#opts.config);
    if (!built.ok) return { kind: 'fail', error: built.error, notes };
    if (bump !== undefined) {
      if (sameResources(this.#lastSent, built.secrets)) return { kind: 'none', notes };
      this.#counter = bump;
    }
    const nonce = this.#opts.nonce();
    this.#lastNonce = nonce;
    if (subscription.node !== null) this.#lastNode = subscription.node;
    this.#lastSent = built.secrets;
    return {
      kind: 'send',
      response: { version_info: this.version, resources: built.secrets.map((s) => s.resource), type_url: subscription.typeUrl, nonce },
      names: built.secrets.map((s) => s.name),
      notes,
    };
  }
}
