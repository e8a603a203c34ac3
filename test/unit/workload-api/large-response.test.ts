import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/common/clock.ts';
import { createLogger } from '../../../src/common/logger.ts';
import {
  DEFAULT_CLIENT_RECEIVE_LIMIT,
  LARGE_RESPONSE_WARN_INTERVAL_MS,
  LargeResponseWarnings,
} from '../../../src/agent/workload-api/large-response.ts';

type LogLine = Record<string, unknown> & { level: string; msg: string };

function setup(): { warnings: LargeResponseWarnings; lines: LogLine[]; clock: ManualClock } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const clock = new ManualClock();
  return { warnings: new LargeResponseWarnings({ logger: createLogger({ name: 'test', level: 'debug', destination }), clock }), lines, clock };
}

const BIG = 6_245_275;

describe('LargeResponseWarnings', () => {
  it('says nothing up to the 4 MiB default receive limit', () => {
    const { warnings, lines } = setup();
    expect(warnings.check({ method: 'FetchX509SVID', pid: 7, bytes: DEFAULT_CLIENT_RECEIVE_LIMIT, counts: () => ({ svids: 1 }) })).toBe(false);
    expect(lines).toEqual([]);
  });

  it('warns past the limit, naming the caller PID, the SVID count and the fix', () => {
    const { warnings, lines } = setup();
    expect(warnings.check({ method: 'FetchX509SVID', pid: 7, bytes: BIG, counts: () => ({ svids: 5_000 }) })).toBe(true);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'warn',
      method: 'FetchX509SVID',
      caller_pid: 7,
      svids: 5_000,
      response_bytes: BIG,
      limit_bytes: DEFAULT_CLIENT_RECEIVE_LIMIT,
    });
    expect(lines[0]?.msg).toMatch(/client needs a larger receive limit/);
  });

  it('warns once per method and caller per interval, then reports how many were suppressed', () => {
    const { warnings, lines, clock } = setup();
    const rotation = { method: 'FetchX509SVID', pid: 7, bytes: BIG, counts: () => ({ svids: 5_000 }) };
    for (let i = 0; i < 10; i++) expect(warnings.check(rotation)).toBe(true);
    expect(lines).toHaveLength(1);
    // Another caller, or another method of the same caller, is warned about at once.
    warnings.check({ ...rotation, pid: 8 });
    warnings.check({ ...rotation, method: 'FetchJWTSVID' });
    expect(lines.map((l) => [l['method'], l['caller_pid']])).toEqual([
      ['FetchX509SVID', 7],
      ['FetchX509SVID', 8],
      ['FetchJWTSVID', 7],
    ]);
    clock.advance(LARGE_RESPONSE_WARN_INTERVAL_MS);
    warnings.check(rotation);
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatchObject({ caller_pid: 7, suppressed_since_last_warning: 9 });
  });

  it('computes counts only when it logs', () => {
    const { warnings } = setup();
    let computed = 0;
    const counts = (): Record<string, number> => ({ svids: ++computed });
    warnings.check({ method: 'FetchX509SVID', pid: 7, bytes: 10, counts });
    warnings.check({ method: 'FetchX509SVID', pid: 7, bytes: BIG, counts });
    warnings.check({ method: 'FetchX509SVID', pid: 7, bytes: BIG, counts });
    expect(computed).toBe(1);
  });

  it('keeps warning about new callers beyond the 4,096 it remembers', () => {
    const { warnings, lines } = setup();
    for (let pid = 1; pid <= 5_000; pid++) warnings.check({ method: 'FetchX509SVID', pid, bytes: BIG, counts: () => ({ svids: 1 }) });
    expect(lines).toHaveLength(5_000);
  });
});
