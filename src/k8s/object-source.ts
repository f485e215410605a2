// Where the control side gets its Kubernetes objects from, the way kube-proxy gets them
// from informers: a complete list first, then every change as {previous, current}, and
// a "synced" signal per kind once that kind's first list was delivered. The manifest
// directory (manifest-dir.ts) is one source; the Kubernetes API (list and watch per
// kind, a relist after 410 Gone that reports the objects which vanished meanwhile as
// deletes) is the other. Consumers such as ServiceController see only this interface.
import type { K8sObject, Kind } from './objects.ts';

/** One object added (previous undefined), changed, or deleted (current undefined). */
export interface ObjectChange {
  previous: K8sObject | undefined;
  current: K8sObject | undefined;
}

export interface ObjectHandler {
  /** One call per added, changed or deleted object. Record it; don't compute here. */
  onChange(change: ObjectChange): void;
  /**
   * Every object of `kind` that existed at the first list has been delivered. Nothing
   * derived from a kind should be published before it (kube-proxy waits for Services
   * and EndpointSlices both).
   */
  onSynced(kind: Kind): void;
  /**
   * The problems of one input changed (a manifest file; for the API, an object that
   * fails validation): its last good objects stay in force. An empty list means the
   * input is fine again. `input` names it in messages.
   */
  onProblems(input: string, problems: readonly string[]): void;
  /** Unexpected failures (a handler threw, the source's connection broke). */
  onError(err: Error): void;
}

export interface ObjectSource {
  /** The kinds this source lists and watches; it reports onSynced for each of them. */
  readonly kinds: readonly Kind[];
  /**
   * Subscribes a handler: it first gets an add for every object already listed and
   * onSynced for every kind already synced, then the changes as they happen. Returns
   * the function that unsubscribes it.
   */
  watch(handler: ObjectHandler): () => void;
  /**
   * Starts listing and watching (once; later calls return the same promise). Resolves
   * after every kind has synced; rejects when the source cannot be read at all.
   */
  start(): Promise<void>;
  stop(): void;
  /** The current objects (the last good state of every input). */
  list(): K8sObject[];
  hasSynced(kind: Kind): boolean;
  /** Lists everything again now; resolves once the changes found were delivered. */
  resync(): Promise<void>;
}
