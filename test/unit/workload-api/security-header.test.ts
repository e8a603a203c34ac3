import { describe, expect, it } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { Code } from '../../../src/common/errors.ts';
import { requireSecurityHeader } from '../../../src/agent/workload-api/middleware.ts';

function metadata(values: string[]): Metadata {
  const md = new Metadata();
  for (const v of values) md.add('workload.spiffe.io', v);
  return md;
}

describe('requireSecurityHeader', () => {
  it.each([
    { path: '/SpiffeWorkloadAPI/FetchX509SVID', values: ['true'], ok: true },
    { path: '/SpiffeWorkloadAPI/FetchJWTSVID', values: [], ok: false },
    { path: '/SpiffeWorkloadAPI/FetchJWTSVID', values: ['TRUE'], ok: false },
    { path: '/SpiffeWorkloadAPI/FetchJWTSVID', values: ['1'], ok: false },
    { path: '/SpiffeWorkloadAPI/FetchJWTSVID', values: ['true', 'true'], ok: false },
    { path: '/SpiffeWorkloadAPI/FetchWITSVID', values: [''], ok: false },
    { path: '/grpc.health.v1.Health/Check', values: [], ok: true },
    { path: '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', values: [], ok: true },
  ])('$path with $values → ok=$ok', ({ path, values, ok }) => {
    const check = (): void => requireSecurityHeader(path, metadata(values));
    if (ok) expect(check).not.toThrow();
    else expect(check).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT, message: 'security header missing from request' }));
  });
});
