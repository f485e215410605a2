// Whether a new ServiceSnapshot can be applied incrementally to the ServiceTable built
// from an earlier one (updateServiceTable), and if so which service ports to rewrite.
// Ports are matched by object identity first, as the control side keeps the object of
// an unchanged port; only the others are compared field by field. An update rewrites
// nothing but a port's endpoint lists and what goes with them, so any change to what
// the frontend maps, key index or source ranges are built from means a whole build,
// as do too many changes (then a whole build is as cheap) and compaction: once the
// garbage updates leave behind would be half of the arrays. How the update itself
// shares and appends is in service-table.ts.
import { MAGLEV_MAX_ENDPOINTS } from './maglev.ts';
import type { Address, AnyPortSpec } from './service-address.ts';

/**
 * What the decision reads of the previous table (a ServiceTable). Structural, because
 * service-table.ts imports this file and importing its class back would be a cycle.
 */
export interface PreviousTable {
  readonly count: number;
  readonly ports: readonly AnyPortSpec[];
  readonly problems: readonly string[];
  readonly nodePortAddressList: readonly Address[];
  readonly endpointIP: Uint32Array;
  readonly maglevUsed: number;
  readonly garbage: number;
}

/** More changed ports than this (or than count / 8) and a whole build is as cheap. */
const INCREMENTAL_MAX_PORTS = 256;

/**
 * The indices of the ports that differ from `prev`'s in nothing but what #putLists
 * writes (endpoints, balancing, affinity, traffic policy), or null when the table must
 * be built whole: another count or order of ports, another frontend, source range or
 * node port address, a previous build with problems (their text and order are the
 * whole build's), a Maglev list over its limit, too many changes, or too much garbage.
 */
export function changedPorts(prev: PreviousTable, ports: readonly AnyPortSpec[], nodePortAddresses: readonly Address[]): number[] | null {
  const n = ports.length;
  if (n !== prev.count || prev.problems.length > 0 || !sameValues(nodePortAddresses, prev.nodePortAddressList)) return null;
  const changed: number[] = [];
  const limit = Math.min(INCREMENTAL_MAX_PORTS, n >>> 3);
  let added = 0;
  for (let i = 0; i < n; i++) {
    const a = prev.ports[i]!;
    const b = ports[i]!;
    if (a === b) continue;
    if (changed.length >= limit || !sameFrontends(a, b)) return null;
    if (b.lb === 'maglev' && (b.clusterEndpoints.length > MAGLEV_MAX_ENDPOINTS || b.externalEndpoints.length > MAGLEV_MAX_ENDPOINTS)) return null;
    added += b.clusterEndpoints.length + b.externalEndpoints.length;
    changed.push(i);
  }
  // Compaction: a whole build once at least half of the arrays would be garbage.
  const size = prev.endpointIP.length + prev.maglevUsed + added;
  if (prev.garbage * 2 > size) return null;
  return changed;
}

/** Every field the frontends, key index, protocol and source ranges are built from. */
function sameFrontends(a: AnyPortSpec, b: AnyPortSpec): boolean {
  if (a.key !== b.key || a.protocol !== b.protocol || a.clusterIP !== b.clusterIP || a.port !== b.port || a.nodePort !== b.nodePort) return false;
  if (!sameValues(a.externalIPs, b.externalIPs) || !sameValues(a.loadBalancerIPs, b.loadBalancerIPs)) return false;
  const ra = a.loadBalancerSourceRanges;
  const rb = b.loadBalancerSourceRanges;
  if (ra.length !== rb.length) return false;
  for (let i = 0; i < ra.length; i++) if (ra[i]![0] !== rb[i]![0] || ra[i]![1] !== rb[i]![1]) return false;
  return true;
}

function sameValues(a: readonly Address[], b: readonly Address[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
