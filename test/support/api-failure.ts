/**
 * The ApiError a promise rejects with, for tests that assert exact codes and messages.
 */
import { ApiError } from '../../src/common/errors.ts';

/** Resolves with the ApiError `promise` rejects with; throws if it resolves or rejects with anything else. */
export async function failure(promise: Promise<unknown>): Promise<ApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(err)}`);
  return err;
}
