import { describe, expect, it } from 'vitest';
import { WorkloadActivity } from '../../src/agent/workload-api/workload-activity.ts';

function setup(): { activity: WorkloadActivity; tick: (ms: number) => void } {
  let now = 1_000;
  return { activity: new WorkloadActivity(() => now), tick: (ms) => void (now += ms) };
}

describe('WorkloadActivity', () => {
  it('a process appears with its first connection and disappears with its last', () => {
    const { activity } = setup();
    activity.connected(42, 1000, 1000, 'pod:abc');
    activity.connected(42, 1000, 1000, 'pod:abc');
    expect(activity.list().map((a) => [a.pid, a.connections, a.group])).toEqual([[42, 2, 'pod:abc']]);
    activity.disconnected(42);
    expect(activity.size).toBe(1);
    activity.disconnected(42);
    expect([activity.size, activity.list()]).toEqual([0, []]);
  });

  it('records calls, the last attestation, streams, bytes and the last X.509 answer', () => {
    const { activity, tick } = setup();
    activity.connected(7, 0, 0, undefined);
    tick(10);
    activity.attested(7, [{ type: 'unix', value: 'uid:0' }], 0.8);
    activity.stream(7, 1);
    activity.sent(7, 1200);
    activity.served(7, [{ spiffeId: 'spiffe://example.org/a', expiresAt: 5 }]);
    activity.sent(7, 300);
    tick(5);
    activity.attested(7, [{ type: 'unix', value: 'uid:0' }], 0.4);
    activity.stream(7, -1);
    expect(activity.list()).toEqual([
      {
        pid: 7,
        uid: 0,
        gid: 0,
        group: undefined,
        connections: 1,
        openStreams: 0,
        calls: 2,
        lastAttestationMs: 0.4,
        selectors: [{ type: 'unix', value: 'uid:0' }],
        spiffeIds: ['spiffe://example.org/a'],
        svidExpiries: [5_000],
        bytesSent: 1500,
        connectedAt: 1_000,
        lastActivityAt: 1_015,
      },
    ]);
  });

  it('lists the most recently active first; updates for unknown PIDs are ignored', () => {
    const { activity, tick } = setup();
    activity.connected(1, 0, 0, undefined);
    tick(1);
    activity.connected(2, 0, 0, undefined);
    tick(1);
    activity.sent(1, 10);
    activity.sent(99, 10);
    activity.attested(99, [], 1);
    activity.stream(99, 1);
    expect(activity.list().map((a) => a.pid)).toEqual([1, 2]);
  });

  it('a snapshot does not change with later updates', () => {
    const { activity } = setup();
    activity.connected(3, 0, 0, undefined);
    const [before] = activity.list();
    activity.sent(3, 100);
    expect(before?.bytesSent).toBe(0);
  });

  it('one answer sent to many processes is summarised once, and keeps no SVID object', () => {
    const { activity } = setup();
    const identities = [{ spiffeId: 'spiffe://example.org/a', expiresAt: 7, certChain: Buffer.alloc(1), privateKey: Buffer.alloc(1) }];
    activity.connected(1, 0, 0, undefined);
    activity.connected(2, 0, 0, undefined);
    activity.served(1, identities);
    activity.served(2, identities);
    const [a, b] = activity.list();
    expect(a?.spiffeIds).toBe(b?.spiffeIds);
    expect([a?.spiffeIds, a?.svidExpiries]).toEqual([['spiffe://example.org/a'], [7000]]);
    expect(JSON.stringify(activity.list())).not.toContain('privateKey');
  });
});
