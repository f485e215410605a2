// Label indexes so that matching selectors stays linear in what changed: with 10,000
// services and 20,000 pods, comparing every pod with every selector is 200 million
// checks per full sync. Selectors are equality-only (Service spec.selector), so a pod
// can match a selector only if it carries each of its pairs: pods are indexed under
// every label pair, services under one pair of their selector.
import type { PodObject, ServiceObject } from '../k8s/objects.ts';

const pairKey = (namespace: string, key: string, value: string): string => `${namespace}\u0000${key}\u0000${value}`;

export class PodIndex {
  readonly #byPair = new Map<string, Map<string, PodObject>>();

  /** Label pairs indexed (each with at least one pod). */
  get size(): number { return this.#byPair.size; }

  add(pod: PodObject): void {
    const ns = pod.metadata.namespace;
    for (const [k, v] of Object.entries(pod.metadata.labels)) {
      const key = pairKey(ns, k, v);
      let pods = this.#byPair.get(key);
      if (pods === undefined) this.#byPair.set(key, (pods = new Map()));
      pods.set(pod.metadata.name, pod);
    }
  }

  /** Removes the pod as it was added (the same labels). */
  remove(pod: PodObject): void {
    const ns = pod.metadata.namespace;
    for (const [k, v] of Object.entries(pod.metadata.labels)) {
      const key = pairKey(ns, k, v);
      const pods = this.#byPair.get(key);
      pods?.delete(pod.metadata.name);
      if (pods?.size === 0) this.#byPair.delete(key);
    }
  }

  /** A superset of the pods of `namespace` the selector matches (the smallest pair's set). */
  candidates(namespace: string, selector: Readonly<Record<string, string>>): Iterable<PodObject> {
    let best: Map<string, PodObject> | undefined;
    for (const [k, v] of Object.entries(selector)) {
      const pods = this.#byPair.get(pairKey(namespace, k, v));
      if (pods === undefined) return [];
      if (best === undefined || pods.size < best.size) best = pods;
    }
    return best?.values() ?? [];
  }
}

export class ServiceSelectorIndex {
  readonly #byPair = new Map<string, Set<string>>();

  /** Selector pairs indexed (each with at least one service). */
  get size(): number { return this.#byPair.size; }

  /** The one pair a service is filed under: the first of its selector in key order. */
  static #pairOf(svc: ServiceObject): string | undefined {
    const selector = svc.spec.selector;
    if (selector === null) return undefined;
    const first = Object.keys(selector).sort()[0]!;
    return pairKey(svc.metadata.namespace, first, selector[first]!);
  }

  add(key: string, svc: ServiceObject): void {
    const pair = ServiceSelectorIndex.#pairOf(svc);
    if (pair === undefined) return;
    let keys = this.#byPair.get(pair);
    if (keys === undefined) this.#byPair.set(pair, (keys = new Set()));
    keys.add(key);
  }

  remove(key: string, svc: ServiceObject): void {
    const pair = ServiceSelectorIndex.#pairOf(svc);
    if (pair === undefined) return;
    const keys = this.#byPair.get(pair);
    keys?.delete(key);
    if (keys?.size === 0) this.#byPair.delete(pair);
  }

  /** Keys of the services in `namespace` whose selector may match these labels. */
  candidates(namespace: string, labels: Readonly<Record<string, string>>): string[] {
    const out: string[] = [];
    for (const [k, v] of Object.entries(labels)) {
      const keys = this.#byPair.get(pairKey(namespace, k, v));
      if (keys !== undefined) out.push(...keys);
    }
    return out;
  }
}
