// A Map whose values are also kept in key order, for the compiled view's lists: a sync
// hands every consumer the complete list of Services (and of ports) in name order, and
// sorting 10k names and looking each up again on every sync was most of a sync's cost
// while Services streamed in by the hundred. Keys added between two reads are put in
// place one by one (a binary search and a splice), or, past INSERTS_BEFORE_SORT of them
// (the first sync, a mass change), the order is rebuilt with one sort.

const INSERTS_BEFORE_SORT = 64;

function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class SortedMap<V> {
  readonly #map = new Map<string, V>();
  /** Keys in order and their values, or null when they are to be rebuilt. */
  #keys: string[] | null = [];
  #values: V[] = [];
  #inserts = 0;

  get size(): number { return this.#map.size; }
  get(key: string): V | undefined { return this.#map.get(key); }
  keys(): IterableIterator<string> { return this.#map.keys(); }

  set(key: string, value: V): void {
    const known = this.#map.has(key);
    this.#map.set(key, value);
    const keys = this.#keys;
    if (keys === null) return;
    const i = this.#search(keys, key);
    if (known) this.#values[i] = value;
    else if (++this.#inserts > INSERTS_BEFORE_SORT) this.#keys = null;
    else {
      keys.splice(i, 0, key);
      this.#values.splice(i, 0, value);
    }
  }

  delete(key: string): boolean {
    if (!this.#map.delete(key)) return false;
    const keys = this.#keys;
    if (keys !== null) {
      const i = this.#search(keys, key);
      keys.splice(i, 1);
      this.#values.splice(i, 1);
    }
    return true;
  }

  /** The values in key order: the map's own array, to be copied, not changed. */
  sortedValues(): readonly V[] {
    if (this.#keys === null) {
      const keys = [...this.#map.keys()].sort(byKey);
      this.#keys = keys;
      this.#values = keys.map((k) => this.#map.get(k)!);
    }
    this.#inserts = 0;
    return this.#values;
  }

  /** Where `key` is or would go in `keys`. */
  #search(keys: readonly string[], key: string): number {
    let lo = 0, hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
