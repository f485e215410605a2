// Pending object changes between two syncs, kube-proxy style: handlers only record
// {previous, current}; several changes to one object collapse into one (the first
// previous, the last current), and an object added then deleted before the sync
// vanishes. The sync drains the lot and does all the work. Each pending change keeps
// the time it was first recorded, for the network programming latency of objects that
// carry no trigger time of their own.
import type { ObjectChange } from '../k8s/object-source.ts';
import { objectKey, type Kind } from '../k8s/objects.ts';

/** A drained change and when (Date.now()) it was first recorded. */
export interface TimedChange {
  change: ObjectChange;
  queuedAt: number;
}

export class ChangeTracker {
  readonly #pending = new Map<string, TimedChange>();

  /** Records one change; returns true when there is something to sync. */
  record(change: ObjectChange, now = Date.now()): boolean {
    const obj = change.current ?? change.previous;
    if (obj === undefined) return this.#pending.size > 0;
    const key = objectKey(obj);
    const earlier = this.#pending.get(key);
    const merged: ObjectChange = { previous: earlier === undefined ? change.previous : earlier.change.previous, current: change.current };
    if (merged.previous === undefined && merged.current === undefined) this.#pending.delete(key);
    else this.#pending.set(key, { change: merged, queuedAt: earlier?.queuedAt ?? now });
    return this.#pending.size > 0;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Pending changes of objects of `kind` (for the changes_pending metrics; walks the pending set). */
  count(kind: Kind): number {
    let n = 0;
    for (const { change } of this.#pending.values()) if ((change.current ?? change.previous)!.kind === kind) n++;
    return n;
  }

  /** All pending changes, in the order their objects first changed; the tracker is then empty. */
  drain(): ObjectChange[] {
    return this.drainTimed().map((t) => t.change);
  }

  /** drain(), with the time each change was first recorded. */
  drainTimed(): TimedChange[] {
    const out = [...this.#pending.values()];
    this.#pending.clear();
    return out;
  }
}
