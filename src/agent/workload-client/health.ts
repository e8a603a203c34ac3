/**
 * `grpc.health.v1.Health/Check` on the Workload API socket, as `spire-agent healthcheck` calls
 * it (empty service name, no security header: the header applies to `/SpiffeWorkloadAPI/*` only).
 */
import { credentials } from '@grpc/grpc-js';
import { unaryCall } from '../../common/grpc-client.ts';
import { HealthClient } from '../../common/proto.ts';
import type { WorkloadEndpoint } from './endpoint.ts';
import { callError } from './rpc-error.ts';

/** The serving status the agent reported: `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** Asks the agent behind `endpoint` for its health; call failures reject with ApiError (see `formatRpcError`). */
export async function checkHealth(endpoint: WorkloadEndpoint, options: { timeoutMs?: number } = {}): Promise<ServingStatus> {
  const client = new HealthClient(endpoint.target, credentials.createInsecure());
  try {
    const call = options.timeoutMs === undefined ? {} : { deadlineMs: options.timeoutMs };
    const res = await unaryCall(client, 'Check', { service: '' }, call).catch(async (err: unknown) => {
      throw await callError(err, endpoint);
    });
    return res.status;
  } finally {
    client.close();
  }
}
