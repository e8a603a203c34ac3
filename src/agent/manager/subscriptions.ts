/**
 * Workload subscriptions grouped by selector set: every workload with the same selectors
 * shares one group, one computed WorkloadState and therefore one serialized response.
 */
import { selectorKey, type Selector } from '../../common/selector.ts';
import type { WorkloadState } from './workload-state.ts';

export type StateListener = (state: WorkloadState) => void;

/** One selector set and everyone subscribed with it. */
export interface Group {
  readonly key: string;
  readonly selectorKeys: ReadonlySet<string>;
  readonly listeners: Set<StateListener>;
  /** The last state delivered; undefined until the first complete state. */
  state: WorkloadState | undefined;
}

/** The group key of a selector list: its sorted, de-duplicated `type:value` keys. */
export function groupKeyOf(selectors: readonly Selector[]): { key: string; keys: Set<string> } {
  const keys = new Set(selectors.map(selectorKey));
  return { key: [...keys].sort().join('\n'), keys };
}

/** The groups, by key. */
export class Subscriptions {
  readonly #groups = new Map<string, Group>();

  /** Adds a listener, creating its group if needed. */
  add(selectors: readonly Selector[], listener: StateListener): Group {
    const { key, keys } = groupKeyOf(selectors);
    let group = this.#groups.get(key);
    if (group === undefined) {
      group = { key, selectorKeys: keys, listeners: new Set(), state: undefined };
      this.#groups.set(key, group);
    }
    group.listeners.add(listener);
    return group;
  }

  /** Removes a listener; drops its group once empty. */
  remove(group: Group, listener: StateListener): void {
    group.listeners.delete(listener);
    if (group.listeners.size === 0) this.#groups.delete(group.key);
  }

  groups(): IterableIterator<Group> {
    return this.#groups.values();
  }

  /** Number of open subscriptions (streams). */
  get listenerCount(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.listeners.size;
    return n;
  }
}
