// What the service control side tells whoever watches its health and its work: the
// agent's /healthz (kube-proxy's ProxyHealthServer: QueuedUpdate, Updated, SyncNode)
// and its /metrics (kube-proxy's sync_proxy_rules_* family). Plain calls with plain
// data, made by ServiceController on its own events; nothing here is on a packet path.
import type { ClusterView } from '../model/cluster-view.ts';

/** This node's Node object as far as health is concerned; null = the source has none. */
export interface NodeState {
  /** metadata.deletionTimestamp is set. */
  deleting: boolean;
  /** spec.taints[].key. */
  taints: readonly string[];
}

export interface SyncResult {
  ok: boolean;
  /** Date.now() when the sync started. */
  startedAt: number;
  durationSeconds: number;
  /** A periodic full sync (no change asked for it). */
  periodic: boolean;
  /**
   * For each Service or EndpointSlice change this sync programmed: seconds from the
   * change (the EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time, else
   * when the agent first saw it) to the end of the sync. Empty for failed syncs.
   */
  programmingLatencies: number[];
  /** The view published; undefined when the sync failed. */
  view: ClusterView | undefined;
}

export interface SyncObserver {
  /** A Service, EndpointSlice or Endpoints change waits for the next sync (kube-proxy's QueuedUpdate). */
  changeQueued(kind: 'Service' | 'EndpointSlice' | 'Endpoints'): void;
  /** A sync ran (kube-proxy's Updated when ok). */
  synced(result: SyncResult): void;
  /** This node's Node object changed, or (null) the source has none once Nodes have synced, or it was deleted. */
  nodeChanged(node: NodeState | null): void;
  /** Cluster mode: the Kubernetes source restarted a watch of `kind` (`reason`: error, stalled, gone). */
  watchRestarted?(kind: string, reason: string): void;
  /** Cluster mode: the API server stopped answering (false) or answers again (true). */
  apiReachable?(reachable: boolean): void;
}
