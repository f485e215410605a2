// What a table swap takes away: the (service port, endpoint) pairs of UDP service
// ports that the new table no longer has. kube-proxy deletes their conntrack entries
// (pkg/proxy/conntrack, CleanStaleEntries) because UDP has no connection to break:
// without it, a client's datagrams would keep going to a dead endpoint until the entry
// timed out. Slow path, run once per swap.
import type { Address } from '../tables/service-address.ts';
import type { ServiceTable } from '../tables/service-table.ts';
import type { ServicePortIds } from './service-ids.ts';

const UDP = 17;

/** Keys `${serviceId}/${endpointIP}/${endpointPort}` (endpointIP as uint32 decimals: an IPv4 address, an IPv6 one's digest). */
export function staleUdpEndpoints(prev: ServiceTable<Address>, prevIds: Int32Array, next: ServiceTable<Address>): Set<string> {
  const stale = new Set<string>();
  for (let i = 0; i < prev.count; i++) {
    if (prev.protocol[i] !== UDP) continue;
    const j = next.byKey.get(prev.ports[i]!.key) ?? -1;
    const same = j >= 0 && next.protocol[j] === UDP;
    if (same && prev.ports[i] === next.ports[j]) continue; // the control side kept the object: unchanged
    if (same && sameList(prev, prev.clusterStart[i]!, prev.clusterCount[i]!, next, next.clusterStart[j]!, next.clusterCount[j]!)
      && sameList(prev, prev.externalStart[i]!, prev.externalCount[i]!, next, next.externalStart[j]!, next.externalCount[j]!)) continue;
    const keep = new Set<string>();
    if (same) {
      addEndpoints(keep, '', next, next.clusterStart[j]!, next.clusterCount[j]!);
      addEndpoints(keep, '', next, next.externalStart[j]!, next.externalCount[j]!);
    }
    const id = prevIds[i]!;
    const lists: [number, number][] = [[prev.clusterStart[i]!, prev.clusterCount[i]!], [prev.externalStart[i]!, prev.externalCount[i]!]];
    for (const [start, count] of lists) {
      for (let k = start; k < start + count; k++) {
        const ep = `${prev.endpointIP[k]}/${prev.endpointPort[k]}`;
        if (!keep.has(ep)) stale.add(`${id}/${ep}`);
      }
    }
  }
  return stale;
}

function addEndpoints(into: Set<string>, prefix: string, t: ServiceTable<Address>, start: number, count: number): void {
  for (let k = start; k < start + count; k++) into.add(`${prefix}${t.endpointIP[k]}/${t.endpointPort[k]}`);
}

function sameList(a: ServiceTable<Address>, as: number, an: number, b: ServiceTable<Address>, bs: number, bn: number): boolean {
  if (an !== bn) return false;
  for (let k = 0; k < an; k++) if (a.endpointIP[as + k] !== b.endpointIP[bs + k] || a.endpointPort[as + k] !== b.endpointPort[bs + k]) return false;
  return true;
}

/**
 * What a table swap changes for a NAT engine (either family's setTable): the ids of the
 * new table's ports, and the stale UDP endpoints whose flows go. An incremental update
 * (updateServiceTable) shares the key index: the same keys at the same indices keep
 * their ids, without a pass over every key.
 */
export function tableSwap(prev: ServiceTable<Address>, prevIds: Int32Array, next: ServiceTable<Address>, portIds: ServicePortIds): { ids: Int32Array; stale: Set<string> } {
  const ids = next.byKey === prev.byKey && portIds.settled ? prevIds : portIds.assign(next);
  return { ids, stale: staleUdpEndpoints(prev, prevIds, next) };
}
