import { describe, expect, it } from 'vitest';
import { formatExplain, formatWorkloads, untilText } from '../../src/agent/cli/debug-format.ts';
import type { ExplainResponse__Output } from '../../src/gen/spiffenodeagent/admin/v1/ExplainResponse.ts';
import type { Workload__Output } from '../../src/gen/spiffenodeagent/admin/v1/Workload.ts';

const NOW = Date.parse('2026-12-06T08:00:00Z');

function response(over: Partial<ExplainResponse__Output>): ExplainResponse__Output {
  return { pid: 0, process: null, attestors: [], selectors: [], matched: [], matched_store_svid: [], near_misses: [], more_near_misses: 0, verdict: null, ...over };
}

describe('formatExplain', () => {
  it('a refused process: its steps, selectors, the near miss and the exact verdict', () => {
    const text = formatExplain(
      response({
        pid: 4242,
        process: { uid: 1001, gid: 1001, steps: [{ name: 'process', duration_ms: 0.04, detail: { source: '/proc/4242/stat', start_time: '99' } }, { name: 'liveness check', duration_ms: 0.02, detail: { same_process: 'true' } }] },
        attestors: [{ plugin: 'unix', duration_ms: 0.31, selectors: [{ type: 'unix', value: 'uid:1001' }], failed: false, error_code: 0, error_message: '', steps: [{ name: 'proc status', duration_ms: 0.05, detail: {} }] }],
        selectors: ['unix:uid:1001'],
        near_misses: [{ entry: { entry_id: 'e1', spiffe_id: 'spiffe://example.org/web', hint: '', selectors: ['unix:uid:1000'], x509_svid_ttl: 0, jwt_svid_ttl: 0, svid_expires_at: 0 }, missing: [{ wanted: 'unix:uid:1000', found: ['unix:uid:1001'] }] }],
        verdict: { code: 7, code_name: 'PermissionDenied', message: 'no identity issued' },
      }),
      NOW,
    );
    expect(text.split('\n')).toEqual([
      'Process 4242 (uid 1001, gid 1001)',
      '  process           0.04 ms  source=/proc/4242/stat start_time=99',
      '  liveness check    0.02 ms  same_process=true',
      '',
      'Attestor unix (0.31 ms): 1 selector',
      '  proc status    0.05 ms',
      '  unix:uid:1001',
      '',
      'Matched entries: none',
      '',
      'Nearest misses:',
      '  spiffe://example.org/web (entry e1)',
      '    unix:uid:1001 found, entry wants unix:uid:1000',
      '',
      'Verdict: PermissionDenied "no identity issued"',
    ]);
  });

  it('a served entry: ID, hint, TTLs, the cached SVID with its expiry', () => {
    const text = formatExplain(
      response({
        selectors: ['k8s:ns:shop'],
        matched: [{ entry_id: 'e2', spiffe_id: 'spiffe://example.org/shop', hint: 'internal', selectors: ['k8s:ns:shop'], x509_svid_ttl: 600, jwt_svid_ttl: 0, svid_expires_at: NOW + 3_599_000 }],
        verdict: { code: 0, code_name: 'OK', message: '1 X509-SVID' },
      }),
      NOW,
    );
    expect(text.split('\n')).toEqual([
      'Selectors (1):',
      '  k8s:ns:shop',
      '',
      'Matched entries (1):',
      '  spiffe://example.org/shop',
      '    Entry ID   : e2',
      '    Hint       : internal',
      '    Selectors  : k8s:ns:shop',
      '    TTL        : X509-SVID 600s, JWT-SVID server default',
      '    SVID       : cached, expires 2026-12-06 08:59:59 +0000 UTC (in 59m59s)',
      '',
      'Verdict: OK (1 X509-SVID)',
    ]);
  });
});

describe('formatWorkloads', () => {
  const w = (over: Partial<Workload__Output>): Workload__Output => ({
    pid: 1, uid: 0, gid: 0, pod_uid: '', container_id: '', pod: '', container_name: '', selectors: [], spiffe_ids: [], svid_expiries: [], connections: 1, open_streams: 0, calls: 0, last_attestation_ms: 0, bytes_sent: 0, connected_at: NOW, last_activity_at: NOW, ...over,
  });
  it('one row per process with its pod, streams, attestation, bytes and earliest SVID expiry', () => {
    const text = formatWorkloads(
      [
        w({ pid: 4242, uid: 1000, pod: 'shop/web-5f6d', container_name: 'web', open_streams: 1, calls: 3, last_attestation_ms: 1.25, bytes_sent: 4096, svid_expiries: [{ spiffe_id: 'a', expires_at: NOW + 90_000 }, { spiffe_id: 'b', expires_at: NOW + 30_000 }], spiffe_ids: ['spiffe://example.org/web'] }),
        w({ pid: 77, container_id: 'abcdef0123456789' }),
      ],
      NOW,
    );
    expect(text.split('\n')).toEqual([
      '2 workload processes connected',
      'PID   UID   POD            CONTAINER     STREAMS  CALLS  ATTEST   SENT     SVID EXPIRES  SPIFFE IDS',
      '4242  1000  shop/web-5f6d  web           1        3      1.25 ms  4.0 KiB  in 30s        spiffe://example.org/web',
      '77    0     -              abcdef012345  0        0      -        0 B      -             -',
    ]);
  });
});

describe('untilText', () => {
  it.each([
    [NOW + 3_723_000, 'in 1h2m3s'],
    [NOW + 59_000, 'in 59s'],
    [NOW - 3_000, 'expired 3s ago'],
  ])('%i → %s', (at, text) => expect(untilText(at, NOW)).toBe(text));
});
