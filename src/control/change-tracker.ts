// Pending object changes between two syncs, kube-proxy style: handlers only record
// {previous, current}; several changes to one object collapse into one (the first
// previous, the last current), and an object added then deleted before the sync
// vanishes. The sync drains the lot and does all the work.
import type { ObjectChange } from '../k8s/object-source.ts';
import { objectKey } from '../k8s/objects.ts';

export class ChangeTracker {
  readonly #pending = new Map<string, ObjectChange>();

  /** Records one change; returns true when there is something to sync. */
  record(change: ObjectChange): boolean {
    const obj = change.current ?? change.previous;
    if (obj === undefined) return this.#pending.size > 0;
    const key = objectKey(obj);
    const earlier = this.#pending.get(key);
    const merged: ObjectChange = { previous: earlier === undefined ? change.previous : earlier.previous, current: change.current };
    if (merged.previous === undefined && merged.current === undefined) this.#pending.delete(key);
    else this.#pending.set(key, merged);
    return this.#pending.size > 0;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** All pending changes, in the order their objects first changed; the tracker is then empty. */
  drain(): ObjectChange[] {
    const out = [...this.#pending.values()];
    this.#pending.clear();
    return out;
  }
}
