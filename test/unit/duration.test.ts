import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/common/duration.ts';

describe('parseDuration', () => {
  const good: Array<[string, number]> = [
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['24h', 86_400_000],
    ['1.5h', 5_400_000],
    ['3600', 3_600_000],
  ];
  for (const [text, ms] of good) {
    it(`parses "${text}" as ${ms} ms`, () => {
      expect(parseDuration(text)).toEqual({ ok: true, value: ms });
    });
  }
  const bad = ['', 'h', '10x', '1h 30m', '-5s', 'soon'];
  for (const text of bad) {
    it(`rejects "${text}"`, () => {
      const result = parseDuration(text);
      expect(result.ok).toBe(false);
    });
  }
  it('names the examples in its error', () => {
    expect(parseDuration('10x')).toEqual({ ok: false, error: '"10x" is not a duration (examples: "90s", "1h30m", "500ms")' });
  });
});

describe('formatDuration', () => {
  const cases: Array<[number, string]> = [
    [250, '250ms'],
    [90_000, '1m30s'],
    [3_600_000, '1h0m0s'],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} ms as ${text}`, () => expect(formatDuration(ms)).toBe(text));
  }
});
