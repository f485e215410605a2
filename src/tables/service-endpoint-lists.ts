// A service port's two endpoint lists (cluster, external) in a ServiceTable's flat
// endpoint arrays, and their Maglev lookup tables: whether the external list can share
// the cluster one (equal contents: one range, one Maglev table), how many endpoint and
// Maglev slots the lists take (counted before anything is written, so a whole build
// allocates every array once and an incremental update knows what it appends), and
// writing one endpoint and one Maglev table. ServiceTable's #putLists places the lists
// with these; used only while building.
import { address6Digest } from './hash.ts';
import { MAGLEV_MAX_ENDPOINTS, maglevTableSize, populateMaglev } from './maglev.ts';
import { words6, type Address, type AnyPortSpec } from './service-address.ts';

/**
 * What the writers fill: the ServiceTable being built. Structural, because
 * service-table.ts imports this file and importing its class back would be a cycle.
 */
export interface EndpointArrays {
  readonly endpointIP: Uint32Array;
  readonly endpointIP6: Int32Array;
  readonly endpointPort: Uint16Array;
  readonly endpointLocal: Uint8Array;
  readonly maglev: Uint16Array;
  readonly problems: string[];
}

export function putEndpoint(table: EndpointArrays, at: number, ip: Address, port: number, local: boolean): number {
  if (typeof ip === 'number') {
    table.endpointIP[at] = ip;
  } else {
    const w = words6(ip);
    table.endpointIP6.set(w, at * 4);
    table.endpointIP[at] = address6Digest(w, 0);
  }
  table.endpointPort[at] = port;
  table.endpointLocal[at] = local ? 1 : 0;
  return at + 1;
}

export function putMaglev(table: EndpointArrays, i: number, slot: number, start: number, count: number, offsets: Int32Array, sizes: Int32Array, p: AnyPortSpec): number {
  if (count === 0) return slot;
  if (count > MAGLEV_MAX_ENDPOINTS) {
    table.problems.push(`service port ${p.key}: ${count} endpoints exceed Maglev's ${MAGLEV_MAX_ENDPOINTS}; random choice used`);
    return slot;
  }
  const size = maglevTableSize(count);
  populateMaglev(table.endpointIP, table.endpointPort, start, count, size, table.maglev, slot);
  offsets[i] = slot;
  sizes[i] = size;
  return slot + size;
}

export function sameEndpoints(a: AnyPortSpec['clusterEndpoints'], b: AnyPortSpec['clusterEndpoints']): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.ip !== b[i]!.ip || a[i]!.port !== b[i]!.port || a[i]!.local !== b[i]!.local) return false;
  return true;
}

/** Endpoint array slots a port's lists take: the external list shares the cluster one when they are the same. */
export function endpointSlots(p: AnyPortSpec, shared: boolean): number {
  return p.clusterEndpoints.length + (shared ? 0 : p.externalEndpoints.length);
}

/** Maglev lookup-table slots a port's lists take (none unless it balances by Maglev). */
export function maglevSlotsOf(p: AnyPortSpec, shared: boolean): number {
  if (p.lb !== 'maglev') return 0;
  let n = p.clusterEndpoints.length > 0 ? maglevTableSize(p.clusterEndpoints.length) : 0;
  if (!shared && p.externalEndpoints.length > 0) n += maglevTableSize(p.externalEndpoints.length);
  return n;
}
