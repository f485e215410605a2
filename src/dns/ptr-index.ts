// The reverse side of the `kubernetes` zone's index: which Services name each address
// in a PTR record (RFC 1035 3.5, RFC 3596 2.5). Every cluster IP of either family names
// its Service, and every other ready endpoint address its endpoint names, in the primary
// zone (CoreDNS's first forward zone). A Service adds its sources when it is compiled and
// takes them out when it changes; the addresses it touches are marked dirty, so an update
// rewrites only their PTR names (kubernetes-zone-records.ts). Several Services may name
// one address; which name wins is ptrRecords()'s rule, CoreDNS's.
import type { ServiceView } from '../model/cluster-view.ts';
import { NameRecords, type EndpointHosts } from './service-records.ts';
import { isPlainName } from './zone-writer.ts';

export interface PtrSource { key: string; target: string; cluster: boolean }

/** Where a Service keeps the addresses it has PTR sources for (ServiceUnit), to take them out again. */
export interface PtrAddresses {
  ptrs: number[];
  ptrs6: string[];
}

export class PtrIndex {
  /** Reverse name -> the Services' addresses that name it (one source, the common case, without an array). */
  private readonly ipv4 = new Map<number, PtrSource | PtrSource[]>();
  /** The same for IPv6 addresses, by their RFC 5952 text. */
  private readonly ipv6 = new Map<string, PtrSource | PtrSource[]>();

  /** The sources of an IPv4 address's PTR name (ptrRecords() makes its records). */
  get(ip: number): PtrSource | PtrSource[] | undefined {
    return this.ipv4.get(ip);
  }

  /** The same for an IPv6 address, by its RFC 5952 text. */
  get6(ip: string): PtrSource | PtrSource[] | undefined {
    return this.ipv6.get(ip);
  }

  /**
   * What `svc` contributes to PTR names: its cluster IPs, and its ready endpoints'
   * addresses, of both families; named in the `primary` zone, its endpoints by their
   * names there (`primaryNames`).
   */
  add(svc: ServiceView, unit: PtrAddresses, dirtyPtrs: Set<number>, dirtyPtrs6: Set<string>, primaryNames: EndpointHosts, primary: string): void {
    if (svc.type === 'ExternalName' || (!svc.headless && svc.clusterIP === 0 && svc.clusterIP6 === '')) return;
    const svcName = `${svc.name}.${svc.namespace}.svc.${primary}`;
    if (!isPlainName(svcName)) return;
    const add = (ip: number, target: string, cluster: boolean): void => {
      const source: PtrSource = { key: svc.key, target, cluster };
      const sources = this.ipv4.get(ip);
      if (sources === undefined) this.ipv4.set(ip, source);
      else if (Array.isArray(sources)) sources.push(source);
      else this.ipv4.set(ip, [sources, source]);
      if (unit.ptrs[unit.ptrs.length - 1] !== ip) unit.ptrs.push(ip);
      dirtyPtrs.add(ip);
    };
    const add6 = (ip: string, target: string, cluster: boolean): void => {
      const source: PtrSource = { key: svc.key, target, cluster };
      const sources = this.ipv6.get(ip);
      if (sources === undefined) this.ipv6.set(ip, source);
      else if (Array.isArray(sources)) sources.push(source);
      else this.ipv6.set(ip, [sources, source]);
      if (unit.ptrs6[unit.ptrs6.length - 1] !== ip) unit.ptrs6.push(ip);
      dirtyPtrs6.add(ip);
    };
    if (!svc.headless && svc.clusterIP !== 0) add(svc.clusterIP, svcName, true);
    if (!svc.headless && svc.clusterIP6 !== '') add6(svc.clusterIP6, svcName, true);
    svc.endpoints.forEach((e, i) => {
      const target = primaryNames.v4[i];
      if (target !== undefined && target !== '') add(e.ip, target, false);
    });
    svc.endpoints6.forEach((e, i) => {
      const target = primaryNames.v6[i];
      if (target !== undefined && target !== '') add6(e.ip, target, false);
    });
  }

  /** Takes out what the Service `key` added (its addresses in `unit`), marking them dirty. */
  remove(key: string, unit: PtrAddresses, dirtyPtrs: Set<number>, dirtyPtrs6: Set<string>): void {
    for (const ip of unit.ptrs) {
      const sources = this.ipv4.get(ip);
      if (sources === undefined) continue;
      const left = Array.isArray(sources) ? sources.filter((s) => s.key !== key) : sources.key !== key ? [sources] : [];
      if (left.length === 0) this.ipv4.delete(ip);
      else this.ipv4.set(ip, left.length === 1 ? left[0]! : left);
      dirtyPtrs.add(ip);
    }
    for (const ip of unit.ptrs6) {
      const sources = this.ipv6.get(ip);
      if (sources === undefined) continue;
      const left = Array.isArray(sources) ? sources.filter((s) => s.key !== key) : sources.key !== key ? [sources] : [];
      if (left.length === 0) this.ipv6.delete(ip);
      else this.ipv6.set(ip, left.length === 1 ? left[0]! : left);
      dirtyPtrs6.add(ip);
    }
  }
}

/**
 * The PTR records of an address from its sources, in Service key order: a cluster IP
 * names its (first) Service alone, as CoreDNS looks Services up before endpoints; else
 * every endpoint name.
 */
export function ptrRecords(sources: PtrSource | PtrSource[]): NameRecords {
  const r = new NameRecords();
  if (!Array.isArray(sources)) r.ptr = [sources.target];
  else {
    // Stable: one Service's sources keep their endpoint order.
    const sorted = [...sources].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const cluster = sorted.find((s) => s.cluster);
    r.ptr = cluster !== undefined ? [cluster.target] : [...new Set(sorted.map((s) => s.target))];
  }
  return r;
}
