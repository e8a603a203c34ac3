/**
 * Workload API endpoint addresses (SPIFFE Workload Endpoint §4): which forms are accepted,
 * the grpc-js target each becomes, and go-spiffe's error messages for the rest.
 */
import { describe, expect, it } from 'vitest';
import { defaultEndpointAddress, parseWorkloadEndpoint, type EndpointParseOptions } from '../../src/agent/workload-client/index.ts';

interface Case {
  address: string;
  options?: EndpointParseOptions;
  /** The grpc-js target, when the address is valid. */
  target?: string;
  /** The error, when it is not. */
  error?: string;
}

const SCHEME = 'workload endpoint socket URI must have a "tcp" or "unix" scheme';

const cases: Case[] = [
  // unix: the spec's absolute-path forms
  { address: 'unix:///run/spire/agent-sockets/spire-agent.sock', target: 'unix:/run/spire/agent-sockets/spire-agent.sock' },
  { address: 'unix:/tmp/agent.sock', target: 'unix:/tmp/agent.sock' },
  { address: 'UNIX:///tmp/agent.sock', target: 'unix:/tmp/agent.sock' },
  { address: 'unix:///tmp/with%20space.sock', target: 'unix:/tmp/with space.sock' },
  { address: 'unix:tmp/agent.sock', error: 'workload endpoint unix socket URI must not be opaque' },
  { address: 'unix:', error: 'workload endpoint unix socket URI must include a path' },
  { address: 'unix://', error: 'workload endpoint unix socket URI must include a path' },
  { address: 'unix://foo', error: 'workload endpoint unix socket URI must not include an authority (write unix:///absolute/path)' },
  { address: 'unix:///tmp/agent.sock?whatever', error: 'workload endpoint unix socket URI must not include query values' },
  { address: 'unix:///tmp/agent.sock#whatever', error: 'workload endpoint unix socket URI must not include a fragment' },
  { address: 'unix://john:doe@foo/path', error: 'workload endpoint unix socket URI must not include user info' },
  // tcp: an IP and a port, nothing else
  { address: 'tcp://127.0.0.1:8081', target: 'ipv4:127.0.0.1:8081' },
  { address: 'tcp://[::1]:8081', target: 'ipv6:[::1]:8081' },
  { address: 'tcp:opaque', error: 'workload endpoint tcp socket URI must not be opaque' },
  { address: 'tcp://', error: 'workload endpoint tcp socket URI must include a host' },
  { address: 'tcp://1.2.3.4:5?whatever', error: 'workload endpoint tcp socket URI must not include query values' },
  { address: 'tcp://1.2.3.4:5#whatever', error: 'workload endpoint tcp socket URI must not include a fragment' },
  { address: 'tcp://john:doe@1.2.3.4:5/path', error: 'workload endpoint tcp socket URI must not include user info' },
  { address: 'tcp://1.2.3.4:5/path', error: 'workload endpoint tcp socket URI must not include a path' },
  { address: 'tcp://foo:5', error: 'workload endpoint tcp socket URI host component must be an IP:port' },
  { address: 'tcp://1.2.3.4', error: 'workload endpoint tcp socket URI host component must include a port' },
  { address: 'tcp://1.2.3.4:99999', error: 'workload endpoint socket is not a valid URI: "tcp://1.2.3.4:99999"' },
  // other schemes and non-URIs
  { address: 'http://127.0.0.1:80', error: SCHEME },
  { address: 'blah', error: SCHEME },
  { address: '/tmp/agent.sock', error: SCHEME },
  { address: '', error: 'workload endpoint socket address is empty' },
  { address: '\t', error: 'workload endpoint socket is not a valid URI: invalid control character in URL' },
  // bare paths, as spire-agent's -socketPath takes them
  { address: '/tmp/spire-agent/public/api.sock', options: { allowPath: true }, target: 'unix:/tmp/spire-agent/public/api.sock' },
  { address: 'api.sock', options: { allowPath: true }, error: 'workload endpoint socket path "api.sock" must be absolute' },
  { address: 'sockets/api.sock', options: { allowPath: true, baseDir: '/var/run' }, target: 'unix:/var/run/sockets/api.sock' },
  { address: 'unix:///tmp/agent.sock', options: { allowPath: true }, target: 'unix:/tmp/agent.sock' },
  { address: 'unix:relative', options: { allowPath: true, baseDir: '/var/run' }, error: 'workload endpoint unix socket URI must not be opaque' },
];

describe('parseWorkloadEndpoint', () => {
  for (const c of cases) {
    it(`${JSON.stringify(c.address)}${c.options ? ` ${JSON.stringify(c.options)}` : ''} → ${c.target ?? c.error}`, () => {
      const parsed = parseWorkloadEndpoint(c.address, c.options);
      if (c.target !== undefined) {
        expect(parsed.ok ? parsed.value.target : parsed.error).toBe(c.target);
      } else {
        expect(parsed.ok ? `accepted as ${parsed.value.target}` : parsed.error).toBe(c.error);
      }
    });
  }

  it('returns the parts of each endpoint', () => {
    expect(parseWorkloadEndpoint('unix:///tmp/a.sock')).toEqual({ ok: true, value: { kind: 'unix', path: '/tmp/a.sock', target: 'unix:/tmp/a.sock' } });
    expect(parseWorkloadEndpoint('tcp://[::1]:9')).toEqual({ ok: true, value: { kind: 'tcp', host: '::1', port: 9, target: 'ipv6:[::1]:9' } });
  });
});

describe('defaultEndpointAddress', () => {
  const table: Array<[Record<string, string | undefined>, string | undefined]> = [
    [{ SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/agent-sockets/spire-agent.sock' }, 'unix:///run/spire/agent-sockets/spire-agent.sock'],
    [{ SPIFFE_ENDPOINT_SOCKET: '' }, undefined],
    [{}, undefined],
  ];
  for (const [env, expected] of table) {
    it(`${JSON.stringify(env)} → ${String(expected)}`, () => {
      expect(defaultEndpointAddress(env)).toBe(expected);
    });
  }
});
