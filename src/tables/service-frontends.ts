// Service frontends and how a build registers them: what a frontend map value means
// (service port index * 4 + FrontendKind), the node-port "address", and adding one
// frontend of a service port to a table under construction. A frontend claimed by two
// service ports stays the first one's (snapshot order, so every node agrees) and the
// second becomes a line in the table's problems. IPv6 frontend addresses are numbered
// 1, 2, ... per build in frontendAddrs6, so the maps stay keyed by one 32-bit number
// for both families. Used only while ServiceTable's constructor builds; slow path.
import type { FrontendMap } from './frontend-map.ts';
import type { Ipv4Map } from './ipv4-map.ts';
import type { Ipv6Map } from './ipv6-map.ts';
import { words6, type Address, type AnyPortSpec } from './service-address.ts';
import { ipv4ToString } from '../wire/address.ts';

export const FrontendKind = { CLUSTER_IP: 0, EXTERNAL_IP: 1, LOAD_BALANCER: 2, NODE_PORT: 3 } as const;
export type FrontendKindCode = (typeof FrontendKind)[keyof typeof FrontendKind];
export const frontendKindNames: readonly string[] = ['cluster IP', 'external IP', 'load-balancer IP', 'node port'];

/** The node-port "address" in the frontend map. */
export const NODE_PORT_ADDR = 0;

/**
 * What registration writes: the ServiceTable being built. Structural, because
 * service-table.ts imports this file and importing its class back would be a cycle.
 */
export interface FrontendTables {
  readonly ports: readonly AnyPortSpec[];
  readonly frontends: FrontendMap;
  readonly frontendAddrs6: Ipv6Map;
  readonly frontendIPs: Ipv4Map;
  readonly problems: string[];
}

/** The frontend maps' key of an address: IPv4 itself; IPv6 its number in frontendAddrs6 (given one here if new). */
export function frontendKey(table: Pick<FrontendTables, 'frontendAddrs6'>, addr: Address): number {
  if (typeof addr === 'number') return addr;
  const w = words6(addr);
  let key = table.frontendAddrs6.getWords(w[0]!, w[1]!, w[2]!, w[3]!);
  if (key < 0) table.frontendAddrs6.setWords(w[0]!, w[1]!, w[2]!, w[3]!, (key = table.frontendAddrs6.size + 1));
  return key;
}

export function addFrontend(table: FrontendTables, addr: Address, p: AnyPortSpec, i: number, kind: number, port: number): void {
  const key = frontendKey(table, addr);
  const had = table.frontends.add(key, p.protocol, port, i * 4 + kind);
  if (had >= 0) {
    const other = table.ports[had >>> 2]!;
    const where = kind === FrontendKind.NODE_PORT ? `node port ${port}` : typeof addr === 'number' ? `${ipv4ToString(addr)}:${port}` : `[${addr}]:${port}`;
    table.problems.push(`service port ${p.key}: ${where}/${p.protocol === 6 ? 'TCP' : 'UDP'} is already ${other.key}'s; ignored`);
    return;
  }
  if (kind !== FrontendKind.NODE_PORT && table.frontendIPs.get(key) < 0) table.frontendIPs.set(key, i);
}
