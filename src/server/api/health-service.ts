/**
 * grpc.health.v1.Health for the server: SERVING while the process accepts RPCs.
 */
import type { HealthHandlers } from '../../gen/grpc/health/v1/Health.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { unary } from './rpc.ts';
import type { Logger } from '../../common/logger.ts';

/** Builds a Health service whose status comes from `isServing`. */
export function createHealthService(logger: Logger, isServing: () => boolean): HealthHandlers {
  const status = (service: string): 'SERVING' | 'NOT_SERVING' => {
    if (service !== '') throw new ApiError(Code.NOT_FOUND, `unknown service "${service}"`);
    return isServing() ? 'SERVING' : 'NOT_SERVING';
  };
  return {
    Check: unary(logger, 'Check', (req) => ({ status: status(req.service) })),
    List: unary(logger, 'List', () => ({ statuses: { '': { status: status('') } } })),
    Watch(call) {
      try {
        call.write({ status: status(call.request.service) });
      } catch (err) {
        call.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    },
  };
}
