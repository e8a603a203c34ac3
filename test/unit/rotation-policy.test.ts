import { describe, expect, it } from 'vitest';
import { latestRotationTime, rotationFraction, shouldRotate } from '../../src/agent/svid/rotation-policy.ts';

describe('shouldRotate', () => {
  // Lifetime 0..1000: rotation is due once remaining life ≤ 450..550 depending on the draw.
  const cases: Array<[string, number, number, boolean]> = [
    ['not yet at the earliest point', 440, 0.999, false],
    ['due at half-life with a middle draw', 500, 0.5, true],
    ['not due at half-life with a low draw', 500, 0.0, false],
    ['due at 45 % elapsed with the highest draw', 451, 0.9999, true],
    ['always due past 55 % elapsed', 551, 0.0, true],
    ['due when expired', 1000, 0.0, true],
    ['due long after expiry', 5000, 0.3, true],
  ];
  for (const [name, now, random, expected] of cases) {
    it(`${name} (now=${now}, draw=${random})`, () => expect(shouldRotate(now, 0, 1000, random)).toBe(expected));
  }
  it('treats a zero lifetime as due', () => expect(shouldRotate(5, 10, 10, 0.5)).toBe(true));
});

describe('rotation fraction', () => {
  it('spans 45–55 %', () => {
    expect(rotationFraction(0)).toBe(0.45);
    expect(rotationFraction(0.999999)).toBeCloseTo(0.55, 5);
  });
  it('latestRotationTime is the 55 %-elapsed point', () => expect(latestRotationTime(0, 1000)).toBe(550));
});
