// Which endpoints of a service port this node uses, following kube-proxy's
// CategorizeEndpoints (pkg/proxy/topology.go):
//  - cluster-policy traffic uses ready endpoints, narrowed by topology hints when every
//    ready endpoint carries hints and some are for this node (PreferSameNode) or its
//    zone (PreferSameZone/PreferClose); with no ready endpoint at all it falls back to
//    serving+terminating ones, ignoring topology (best effort to keep connections going);
//  - local-policy traffic uses this node's ready endpoints, else this node's
//    serving+terminating ones; topology does not apply.
import type { EndpointSpec } from '../model/service-snapshot.ts';

export interface HintedEndpoint<A = number> {
  spec: EndpointSpec<A>;
  forZones: readonly string[];
  forNodes: readonly string[];
}

export const TopologyMode = { NONE: '', SAME_NODE: 'PreferSameNode', SAME_ZONE: 'PreferSameZone' } as const;
export type TopologyMode = (typeof TopologyMode)[keyof typeof TopologyMode];

/** Decides from the hints alone; trafficDistribution acts through the hints the controller wrote. */
export function topologyModeFromHints<A>(endpoints: readonly HintedEndpoint<A>[], nodeName: string, zone: string): TopologyMode {
  let anyReady = false;
  let allNodeHints = true;
  let forThisNode = false;
  let allZoneHints = true;
  let forThisZone = false;
  for (const ep of endpoints) {
    if (!ep.spec.ready) continue;
    anyReady = true;
    if (ep.forNodes.length === 0) allNodeHints = false;
    else if (ep.forNodes.includes(nodeName)) forThisNode = true;
    if (ep.forZones.length === 0) allZoneHints = false;
    else if (zone !== '' && ep.forZones.includes(zone)) forThisZone = true;
  }
  if (!anyReady) return TopologyMode.NONE;
  if (allNodeHints && forThisNode) return TopologyMode.SAME_NODE;
  if (allZoneHints && forThisZone) return TopologyMode.SAME_ZONE;
  return TopologyMode.NONE;
}

function availableForTopology<A>(ep: HintedEndpoint<A>, mode: TopologyMode, nodeName: string, zone: string): boolean {
  switch (mode) {
    case TopologyMode.NONE: return true;
    case TopologyMode.SAME_NODE: return ep.forNodes.includes(nodeName);
    case TopologyMode.SAME_ZONE: return ep.forZones.includes(zone);
  }
}

export interface Categorized<A = number> {
  /** Cluster-policy endpoints ([] when the service never uses cluster policy). */
  cluster: EndpointSpec<A>[];
  /** Local-policy endpoints ([] when the service never uses local policy). */
  local: EndpointSpec<A>[];
  topologyMode: TopologyMode;
}

export function categorizeEndpoints<A>(endpoints: readonly HintedEndpoint<A>[], usesCluster: boolean, usesLocal: boolean, nodeName: string, zone: string): Categorized<A> {
  let cluster: EndpointSpec<A>[] = [];
  let local: EndpointSpec<A>[] = [];
  let topologyMode: TopologyMode = TopologyMode.NONE;
  if (usesCluster) {
    topologyMode = topologyModeFromHints(endpoints, nodeName, zone);
    cluster = endpoints.filter((ep) => ep.spec.ready && availableForTopology(ep, topologyMode, nodeName, zone)).map((ep) => ep.spec);
    // The topology mode already fell back to NONE if no ready endpoint suits this
    // node, so an empty list here means no ready endpoint anywhere.
    if (cluster.length === 0) cluster = endpoints.filter((ep) => ep.spec.serving && ep.spec.terminating).map((ep) => ep.spec);
  }
  if (usesLocal) {
    local = endpoints.filter((ep) => ep.spec.local && ep.spec.ready).map((ep) => ep.spec);
    if (local.length === 0) local = endpoints.filter((ep) => ep.spec.local && ep.spec.serving && ep.spec.terminating).map((ep) => ep.spec);
  }
  return { cluster, local, topologyMode };
}
