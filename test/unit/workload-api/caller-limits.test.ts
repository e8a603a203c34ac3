import { describe, expect, it } from 'vitest';
import { CallerLedger, type CallerKey } from '../../../src/agent/workload-api/caller-limits.ts';

const limits = { connectionsPerProcess: 2, connectionsPerPod: 3, callsPerCaller: 2, streamsPerConnection: 100 };
const proc = (pid: number, group?: string): CallerKey => ({ pid, group });

describe('CallerLedger', () => {
  it('counts connections per process and per pod, answers refusals up to the pod limit, then drops', () => {
    const ledger = new CallerLedger(limits);
    const actions = [proc(1, 'pod:a'), proc(1, 'pod:a'), proc(1, 'pod:a'), proc(2, 'pod:a'), proc(3, 'pod:a'), proc(3, 'pod:a'), proc(3, 'pod:a')].map(
      (key) => {
        const over = ledger.openConnection(key);
        return over === undefined ? 'ok' : `${over.action}:${over.limit}`;
      },
    );
    expect(actions).toEqual([
      'ok',
      'ok',
      'answer:connections_per_process',
      'ok',
      'answer:connections_per_pod',
      'answer:connections_per_pod',
      'drop:connections_per_pod',
    ]);
    // Closing a refused connection frees a refusal slot, not a real one.
    ledger.closeConnection(proc(3, 'pod:a'), true);
    expect(ledger.openConnection(proc(3, 'pod:a'))?.action).toBe('answer');
    ledger.closeConnection(proc(2, 'pod:a'), false);
    expect(ledger.openConnection(proc(3, 'pod:a'))).toBeUndefined();
  });

  it('counts calls per pod, or per process outside pods; a release is idempotent', () => {
    const ledger = new CallerLedger(limits);
    const first = ledger.startCall(proc(1, 'pod:a'));
    expect(typeof ledger.startCall(proc(2, 'pod:a'))).toBe('function');
    expect(ledger.startCall(proc(3, 'pod:a'))).toMatchObject({ limit: 'calls_per_caller' });
    expect(typeof ledger.startCall(proc(4))).toBe('function');
    if (typeof first !== 'function') throw new Error('first call refused');
    first();
    first();
    expect(typeof ledger.startCall(proc(3, 'pod:a'))).toBe('function');
    expect(ledger.startCall(proc(3, 'pod:a'))).toMatchObject({ limit: 'calls_per_caller' });
  });
});
