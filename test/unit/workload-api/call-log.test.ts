import { describe, expect, it } from 'vitest';
import { Code } from '../../../src/common/errors.ts';
import type { Logger } from '../../../src/common/logger.ts';
import { CallLog, REFUSAL_LOG_INTERVAL_MS, type CallRecord } from '../../../src/agent/workload-api/middleware.ts';

interface Line {
  readonly level: string;
  readonly fields: Record<string, unknown>;
}

function recordingLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (fields: Record<string, unknown>) => void lines.push({ level, fields });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger };
}

const call = (pid: number, code: Code): CallRecord => ({ method: 'FetchX509SVID', pid, code, message: 'no identity issued', durationMs: 0.2 });

describe('CallLog', () => {
  it('writes a polling caller\'s refusals once per interval, then says how many it left out', () => {
    const { logger, lines } = recordingLogger();
    let now = 1_000_000;
    const log = new CallLog(logger, { now: () => now });
    for (let i = 0; i <= 500; i++) {
      log.record(call(42, Code.PERMISSION_DENIED));
      now += 20;
    }
    // 501 calls 20 ms apart: the first line, then one at 10 s (the interval) counting the 499 between.
    expect(lines.map((l) => [l.level, l.fields['caller_pid'], l.fields['suppressed_since_last']])).toEqual([
      ['info', 42, undefined],
      ['info', 42, REFUSAL_LOG_INTERVAL_MS / 20 - 1],
    ]);
  });

  it.each([
    { name: 'another caller', second: call(43, Code.PERMISSION_DENIED) },
    { name: 'another refusal of the same caller', second: call(42, Code.RESOURCE_EXHAUSTED) },
  ])('keeps its own allowance for $name', ({ second }) => {
    const { logger, lines } = recordingLogger();
    const log = new CallLog(logger, { now: () => 0 });
    log.record(call(42, Code.PERMISSION_DENIED));
    log.record(call(42, Code.PERMISSION_DENIED));
    log.record(second);
    expect(lines).toHaveLength(2);
  });

  it('never holds back debug-level lines (successful and cancelled calls)', () => {
    const { logger, lines } = recordingLogger();
    const log = new CallLog(logger, { now: () => 0 });
    for (let i = 0; i < 5; i++) log.record(call(42, Code.OK));
    expect(lines.map((l) => l.level)).toEqual(['debug', 'debug', 'debug', 'debug', 'debug']);
  });
});
