// How the control side keeps what it keeps per object. 25,000 Services with ten
// endpoints each are some 600,000 small objects, lists and strings held for as long as
// the objects exist, so their layout is the agent's memory: strings that keep no larger
// string alive, lists exactly as long as they are, and one shared frozen object for
// every empty list and mapping.

/**
 * `s` as one flat string of its own. V8 gives a parser's substrings of 13 characters or
 * more as views (sliced strings) into the whole text they came from, so one kept name
 * would keep a whole manifest file alive; and a string put together from pieces (a
 * "namespace/name" key) is a tree of them, 32 bytes a node, until it is flattened.
 * Shorter strings are flat copies already. The JSON round trip is the cheapest way to
 * a flat copy V8 offers to JavaScript (0.15 µs for an address).
 */
export function flat(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}

/** The one empty list every kept empty list is. Frozen: a push to it throws (and does not type-check). */
export const NO_ITEMS = Object.freeze([]) as unknown as never[];

/** The one empty mapping (labels, annotations, selectors with nothing in them). */
export const NO_ENTRIES: Readonly<Record<string, never>> = Object.freeze({});

/**
 * `list` to keep: a copy exactly as long as it is (a list that grew by push keeps room
 * for more: 17 slots for one port), frozen, or NO_ITEMS when it is empty. A frozen list
 * is one kept already (or a constant), and is shared as it is.
 */
export function kept<T>(list: readonly T[]): T[] {
  if (list.length === 0) return NO_ITEMS;
  return (Object.isFrozen(list) ? list : Object.freeze(list.slice())) as T[];
}

/** `map` to keep: NO_ENTRIES when it has no entries. */
export function keptEntries<V>(map: Record<string, V>): Record<string, V> {
  for (const _ in map) return map;
  return NO_ENTRIES;
}

/**
 * One shared copy per distinct value (node and zone names, port lists) however many
 * objects carry it: a cluster has few, and every parsed document has its own. Bounded,
 * so that a stream of distinct values cannot grow it without end; past the bound
 * values are kept as they come.
 */
export class Interner<T> {
  readonly #known = new Map<string, T>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** The shared value for `key`, `value` itself when it is the first (or the table is full). */
  get(key: string, value: T): T {
    const known = this.#known.get(key);
    if (known !== undefined) return known;
    if (this.#known.size < this.#max) this.#known.set(key, value);
    return value;
  }
}

/**
 * Lists kept (kept(), their items frozen) one copy per distinct content: the port lists
 * that most Services, slices and views repeat ("http", 80 to 8080).
 */
export class ListInterner<T extends object> {
  readonly #lists: Interner<T[]>;

  constructor(max: number) {
    this.#lists = new Interner(max);
  }

  keep(list: T[]): T[] {
    return list.length === 0 ? NO_ITEMS : this.#lists.get(JSON.stringify(list), kept(list.map((item) => Object.freeze(item))));
  }
}
