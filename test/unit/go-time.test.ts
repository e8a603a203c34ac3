import { describe, expect, it } from 'vitest';
import { formatGoTime, formatGoTimeUtc } from '../../src/common/go-time.ts';

// Expected values are what Go 1.26 prints for time.Unix(…).In(time.LoadLocation(zone)).String().
describe('formatGoTime', () => {
  const winter = Date.UTC(2026, 0, 15, 12, 34, 56, 789);
  const summer = Date.UTC(2026, 6, 15, 12, 34, 56);
  const cases: Array<[number, string, string]> = [
    [winter, 'UTC', '2026-01-15 12:34:56 +0000 UTC'],
    [winter, 'Etc/UTC', '2026-01-15 12:34:56 +0000 UTC'],
    [winter, 'America/New_York', '2026-01-15 07:34:56 -0500 EST'],
    [summer, 'America/New_York', '2026-07-15 08:34:56 -0400 EDT'],
    [winter, 'America/Los_Angeles', '2026-01-15 04:34:56 -0800 PST'],
    [winter, 'Europe/London', '2026-01-15 12:34:56 +0000 GMT'],
    [summer, 'Europe/London', '2026-07-15 13:34:56 +0100 BST'],
    [winter, 'Europe/Berlin', '2026-01-15 13:34:56 +0100 CET'],
    [summer, 'Europe/Paris', '2026-07-15 14:34:56 +0200 CEST'],
    [winter, 'Asia/Kolkata', '2026-01-15 18:04:56 +0530 IST'],
    [winter, 'Australia/Adelaide', '2026-01-15 23:04:56 +1030 ACDT'],
    [winter, 'America/Sao_Paulo', '2026-01-15 09:34:56 -0300 -03'],
  ];
  for (const [ms, zone, expected] of cases) {
    it(`${zone} ${new Date(ms).toISOString()}`, () => expect(formatGoTime(ms, zone)).toBe(expected));
  }
  it('UTC helper drops milliseconds', () => expect(formatGoTimeUtc(winter)).toBe('2026-01-15 12:34:56 +0000 UTC'));
});
