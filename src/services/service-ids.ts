// Stable ids of service ports, shared by both families' NAT engines: what conntrack
// entries carry as tag and affinity slots carry as key. A port keeps its id across
// table swaps (matched by key, "namespace/name:port"), and across an agent restart when
// the successor is handed the ids (ServiceIds) with the flow tables they describe.
// Slow path: run once per table swap.

/** Stable ids of service ports by key (ServiceTable ports' `key`), and the next unused id. */
export interface ServiceIds {
  byKey: ReadonlyMap<string, number>;
  next: number;
}

export class ServicePortIds {
  #byKey = new Map<string, number>();
  #next = 0;
  /** Ids handed over by the previous process, for the first assign() only. */
  #inherited: ReadonlyMap<string, number> | null = null;
  /** Increases whenever the ids change (a caller that persists them compares it). */
  version = 0;

  constructor(handed?: ServiceIds) {
    if (handed !== undefined) {
      this.#inherited = handed.byKey;
      this.#next = handed.next;
    }
  }

  /** New ids start past `tag`: a flow taken over carries it, whatever the handed-over ids say. */
  reserve(tag: number): void {
    this.#next = Math.max(this.#next, tag + 1);
  }

  /** Whether the next assign() may be skipped for a table sharing the previous key index (nothing inherited waits). */
  get settled(): boolean {
    return this.#inherited === null;
  }

  /** The id of every port of `table`, by index: kept by key, new ones past every id given. */
  assign(table: { readonly count: number; readonly ports: readonly { readonly key: string }[] }): Int32Array {
    const ids = new Int32Array(table.count);
    const next = new Map<string, number>();
    for (let i = 0; i < table.count; i++) {
      const key = table.ports[i]!.key;
      let id = next.get(key) ?? this.#byKey.get(key) ?? this.#inherited?.get(key);
      if (id === undefined) id = this.#next++;
      next.set(key, id);
      ids[i] = id;
    }
    this.#inherited = null;
    if (!sameIds(next, this.#byKey)) this.version++;
    this.#byKey = next;
    return ids;
  }

  /** The current ids by key, for a successor process. */
  snapshot(): ServiceIds {
    return { byKey: new Map(this.#byKey), next: this.#next };
  }
}

function sameIds(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, id] of a) if (b.get(key) !== id) return false;
  return true;
}
