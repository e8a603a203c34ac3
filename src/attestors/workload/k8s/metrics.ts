/**
 * What the `k8s` attestor records: kubelet `/pods` requests by outcome and duration, and
 * whether an attestation was answered from the shared pod index without waiting.
 */
import { NOOP_COUNTER, type EventCounter } from '../../../common/recorders.ts';

/**
 * How one kubelet request ended. A closed set, so it bounds the label values:
 * - `ok`: 200 with a body;
 * - `unauthorized` / `forbidden`: 401 / 403 (credentials or RBAC; see kubelet-errors.ts);
 * - `http_error`: any other status;
 * - `tls_error`: the kubelet's certificate or the TLS handshake was refused;
 * - `unreachable`: connection or transfer failed;
 * - `timeout`: the whole-request timeout elapsed;
 * - `cancelled`: the pod index was closed meanwhile;
 * - `credentials_error`: the token, CA or client certificate file could not be read (no request sent).
 */
export type KubeletOutcome =
  | 'ok'
  | 'unauthorized'
  | 'forbidden'
  | 'http_error'
  | 'tls_error'
  | 'unreachable'
  | 'timeout'
  | 'cancelled'
  | 'credentials_error';

/** Every outcome, for binding series up front. */
export const KUBELET_OUTCOMES: readonly KubeletOutcome[] = [
  'ok',
  'unauthorized',
  'forbidden',
  'http_error',
  'tls_error',
  'unreachable',
  'timeout',
  'cancelled',
  'credentials_error',
];

/**
 * Told how each kubelet request ended, with the error message of a failed one, right after
 * it ends (the agent's health reports the last one; see health-report.ts).
 */
export type KubeletOutcomeListener = (outcome: KubeletOutcome, error: string | undefined) => void;

/** Kubelet request recording. */
export interface KubeletMetrics {
  /** One finished `/pods` request (or attempt). */
  request(outcome: KubeletOutcome, seconds: number): void;
}

/** The `k8s` attestor's recorders. */
export interface K8sAttestorMetrics {
  readonly kubelet: KubeletMetrics;
  /** A containerized caller answered from a fresh shared pod list, without waiting. */
  readonly podIndexHits: EventCounter;
  /** A containerized caller that had to wait for a kubelet fetch. */
  readonly podIndexMisses: EventCounter;
}

/** Records nothing. */
export const NOOP_K8S_METRICS: K8sAttestorMetrics = {
  kubelet: { request() {} },
  podIndexHits: NOOP_COUNTER,
  podIndexMisses: NOOP_COUNTER,
};
