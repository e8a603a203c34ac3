import { describe, expect, it } from 'vitest';
import { filterByHint, type Hinted } from '../../../src/agent/workload-api/hint-filter.ts';

const h = (entryId: string, hint: string, createdAt: number): Hinted => ({ entryId, hint, createdAt });

describe('filterByHint', () => {
  it.each([
    { name: 'orders by entry ID (byte order, not locale)', input: [h('b', '', 1), h('B', '', 1), h('a', '', 1)], kept: ['B', 'a', 'b'] },
    { name: 'keeps every identity without a hint', input: [h('2', '', 5), h('1', '', 5)], kept: ['1', '2'] },
    { name: 'keeps the oldest entry among duplicate hints', input: [h('a', 'x', 20), h('b', 'x', 10), h('c', 'x', 30)], kept: ['b'] },
    { name: 'breaks a createdAt tie with the smaller entry ID', input: [h('z', 'x', 10), h('m', 'x', 10)], kept: ['m'] },
    { name: 'filters each hint independently', input: [h('1', 'x', 2), h('2', 'y', 1), h('3', 'x', 1), h('4', 'y', 2), h('5', '', 0)], kept: ['2', '3', '5'] },
    { name: 'returns nothing for nothing', input: [], kept: [] },
  ])('$name', ({ input, kept }) => {
    expect(filterByHint(input).map((i) => i.entryId)).toEqual(kept);
  });

  it('does not reorder its input array', () => {
    const input = [h('b', '', 1), h('a', '', 1)];
    filterByHint(input);
    expect(input.map((i) => i.entryId)).toEqual(['b', 'a']);
  });
});
