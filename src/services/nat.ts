// The service NAT engine: kube-proxy's semantics decided per packet in TypeScript.
// The datapath calls process() for every decoded IPv4 packet; it answers with a
// Verdict and, for NATED, has rewritten the packet in place (incremental checksums,
// src/wire/nat.ts). Nothing here allocates per packet: tables are typed arrays,
// results are small integers in a reused NatResult, addresses cross calls as int32.
//
// A packet is, in this order: an ICMP error about a tracked flow (translated through
// its quoted header, RFC 5508 §4.2); a packet of a tracked flow, either way (NAT from
// its conntrack entry); the first packet of a flow to a frontend (cluster IP, external
// IP, load-balancer IP, node port): endpoint chosen, entry created, DNAT and maybe
// SNAT; or nothing of ours (PASS).
//
// Which endpoints and whether to masquerade follow kube-proxy's iptables proxier
// (pkg/proxy/iptables/proxier.go, syncProxyRules):
//   cluster IP       <- pod: cluster endpoints, source kept (hairpin: SNAT)
//                    <- host / outside: cluster endpoints, masqueraded
//   external IP, LB IP, node port, externalTrafficPolicy Cluster: external endpoints, masqueraded
//   ... Local        <- outside: local endpoints, source kept
//                    <- pod: cluster endpoints, source kept ("pod traffic for external destinations")
//                    <- host: cluster endpoints, masqueraded ("masquerade LOCAL traffic")
//   no endpoints at all: REJECT; endpoints but none under a Local policy: DROP.
import {
  IpProtocol, emitIcmpv4PortUnreachable, emitTcpReset, icmpErrorAllowed, type EthernetRepr, type PacketInfo,
} from '../wire/index.ts';
import { AffinityTable, AFFINITY_DEFAULT_CAPACITY } from '../tables/affinity.ts';
import { CONNTRACK_SOURCE_LIMITED, Conntrack, EntryStatus, type ConntrackOptions } from '../tables/conntrack.ts';
import type { FlowStore } from '../tables/flow-store.ts';
import { MAGLEV_FLOW_SEED, flowHash } from '../tables/hash.ts';
import { FrontendKind, NODE_PORT_ADDR } from '../tables/service-frontends.ts';
import { PortFlag, type ServiceTable } from '../tables/service-table.ts';
import { TCP_FLAG_CLASS_SYN, TCP_INVALID, TcpState, tcpFlagClass, tcpReopens, tcpTransition } from '../tables/tcp-state.ts';
import { LbChoice, MasqReason, NatReason, POLICY_EXTERNAL, Verdict, servicePolicy } from './nat-codes.ts';
import { NatResult, xorshift } from './nat-result.ts';
import { ServicePortIds, type ServiceIds } from './service-ids.ts';
import { tableSwap } from './table-diff.ts';
import { translateFlow, translateIcmpError } from './translate.ts';

/** SNAT source ports tried after the client's own (Linux keeps the port when the tuple is free). */
const SNAT_PORT_TRIES = 16;
const SNAT_PORT_MIN = 1024;

export interface ServiceNatOptions {
  /** Source address for masqueraded flows: an address of this node that endpoints on every node route back here. */
  masqueradeIP: number;
  /** Source address for hairpin flows (a pod reaching itself), e.g. the node's pod-CIDR gateway. Default: masqueradeIP. */
  hairpinIP?: number;
  /** Masquerade every service flow (kube-proxy --masquerade-all). */
  masqueradeAll?: boolean;
  conntrack?: ConntrackOptions;
  /** Client-IP affinity entries; default 65536. */
  affinityCapacity?: number;
  /** Seed of the random endpoint choice (tests fix it); default random. */
  seed?: number;
  /**
   * Memory for conntrack and affinity that outlives the process (flow-store.ts): its
   * capacities win over `conntrack.capacity` and `affinityCapacity`, and a store that
   * is not fresh is taken over with its flows.
   */
  store?: FlowStore;
  /**
   * Service port ids of the process that wrote `store`: its conntrack entries and
   * affinity slots name service ports by these. Used for the ports of the first
   * setTable(); the table given to the constructor is then only a placeholder.
   */
  serviceIds?: ServiceIds;
}

export type { ServiceIds } from './service-ids.ts';
export { NatResult } from './nat-result.ts';

export class ServiceNat {
  readonly conntrack: Conntrack;
  readonly affinity: AffinityTable;
  readonly result = new NatResult();
  /** Packets by verdict (verdictNames) and dropped/rejected by reason (natReasonNames): the result's tallies. */
  readonly verdicts = this.result.verdicts;
  readonly reasons = this.result.reasons;
  readonly #masqueradeIP: number;
  readonly #hairpinIP: number;
  readonly #masqueradeAll: boolean;
  readonly #rng = new Int32Array(1);
  #table: ServiceTable;
  /** Stable id per service port of the current table (kept across swaps by key): conntrack tags, affinity keys. */
  #ids: Int32Array;
  readonly #portIds: ServicePortIds;

  constructor(table: ServiceTable, options: ServiceNatOptions) {
    this.#masqueradeIP = options.masqueradeIP >>> 0;
    this.#hairpinIP = (options.hairpinIP ?? options.masqueradeIP) >>> 0;
    this.#masqueradeAll = options.masqueradeAll ?? false;
    const store = options.store;
    if (store === undefined) {
      this.conntrack = new Conntrack(options.conntrack);
      this.affinity = new AffinityTable(options.affinityCapacity ?? AFFINITY_DEFAULT_CAPACITY);
    } else {
      this.conntrack = new Conntrack({
        ...options.conntrack,
        capacity: store.conntrackCapacity,
        memory: { buffer: store.buffer, byteOffset: store.conntrackOffset, restore: !store.fresh },
      });
      this.affinity = new AffinityTable(store.affinitySlots, {
        buffer: store.buffer, byteOffset: store.affinityOffset, slots: store.affinitySlots, restore: !store.fresh,
      });
    }
    this.#portIds = new ServicePortIds(options.serviceIds);
    // New ids never reuse one a taken-over entry carries, whatever the handed-over ids say.
    if (this.conntrack.restored > 0) for (const e of this.conntrack.entries()) this.#portIds.reserve(this.conntrack.tagOf(e));
    this.#rng[0] = (options.seed ?? Math.floor(Math.random() * 0x7fffffff)) | 1;
    this.#table = table;
    // The first table is a placeholder when ids were handed over: they are for the first setTable().
    this.#ids = options.serviceIds !== undefined ? new Int32Array(table.count) : this.#portIds.assign(table);
  }

  /** Increases whenever the ids change (a caller that persists them compares it). */
  get idsVersion(): number {
    return this.#portIds.version;
  }

  get table(): ServiceTable {
    return this.#table;
  }

  /** The ids of the current table's service ports by key, for a successor process (slow path). */
  serviceIds(): ServiceIds {
    return this.#portIds.snapshot();
  }

  /** Stable id of service port `index` of the current table (what conntrack entries carry as tag). */
  serviceId(index: number): number {
    return this.#ids[index]!;
  }

  /**
   * Swaps in a new table between batches. Established flows keep their conntrack
   * entries; UDP flows to endpoints a service port lost are removed at once, as
   * kube-proxy's conntrack cleanup does (TCP flows are left to end or time out).
   * Returns how many conntrack entries were flushed.
   */
  setTable(table: ServiceTable): number {
    const { ids, stale } = tableSwap(this.#table, this.#ids, table, this.#portIds);
    this.#table = table;
    this.#ids = ids;
    if (stale.size === 0) return 0;
    const ct = this.conntrack;
    return ct.flush((e) => {
      if (ct.protocolOf(e) !== IpProtocol.UDP) return false;
      const reply = ct.tuple(e * 2 + 1);
      return stale.has(`${ct.tagOf(e)}/${reply.src}/${reply.srcPort}`);
    });
  }

  /** Removes the flows whose replies come from ip:port over `protocol` (conntrack -D --reply-src). */
  flushEndpoint(ip: number, port: number, protocol: number): number {
    return this.conntrack.flushEndpoint(ip, port, protocol);
  }

  /** Conntrack garbage collection, a slice per call (call it per batch or on a timer). */
  expire(now: number, maxScan = 1024): number {
    return this.conntrack.expire(now, maxScan);
  }

  /**
   * Decides one decoded IPv4 packet (`info` from decodeFrame over `buf`). `l4Partial`:
   * the frame carries virtio-net NEEDS_CSUM. `now`: the caller's monotonic clock in
   * seconds (conntrack and affinity expiry). Returns a Verdict; see `result`.
   */
  process(info: PacketInfo, buf: Uint8Array, entryPoint: number, l4Partial: boolean, now: number): number {
    const r = this.result;
    r.reset();
    if (info.ipVersion !== 4) return this.result.record(Verdict.PASS);
    const proto = info.protocol;
    if (proto === IpProtocol.ICMP) return info.origL4Offset >= 0 ? this.#icmpError(info, buf, now) : this.result.record(Verdict.PASS);
    if (proto !== IpProtocol.TCP && proto !== IpProtocol.UDP) return this.result.record(Verdict.PASS);
    const dst = info.dst4 | 0;
    if (info.payloadOffset < 0 || info.isFragment) {
      return this.#table.frontendIPs.get(dst) >= 0 ? this.result.drop(NatReason.FRAGMENT) : this.result.record(Verdict.PASS);
    }
    const src = info.src4 | 0;
    const sport = info.srcPort;
    const dport = info.dstPort;
    const flags = proto === IpProtocol.TCP ? info.tcpFlags : 0;
    const ct = this.conntrack;
    const ref = ct.lookup(proto, src, sport, dst, dport, now);
    if (ref >= 0) {
      const e = ref >> 1;
      const dir = ref & 1;
      if (proto !== IpProtocol.TCP || !tcpReopens(ct.stateOf(e), dir, flags)) {
        ct.update(e, dir, flags, now);
        r.entry = e;
        r.direction = dir;
        translateFlow(this.conntrack, info, buf, e, dir, l4Partial);
        return this.result.record(Verdict.NATED);
      }
      ct.remove(e); // a new connection on the old tuple: NAT it afresh
    }
    return this.#newFlow(info, buf, entryPoint, l4Partial, now, proto, src, sport, dst, dport, flags);
  }

  /**
   * A direct connection (no service) whose replies would carry the reply tuple of a
   * service flow: a client that talked to an endpoint through its cluster IP, closed,
   * and now opens a connection to the endpoint itself from the same port. Its replies
   * must not be reverse-NATed to the service address (the client would drop them and
   * time out). As Linux does, a new SYN that meets a closing entry replaces it: the
   * entry goes, and the direct flow passes untouched.
   */
  #releaseReplyTuple(src: number, sport: number, dst: number, dport: number, flags: number, now: number): void {
    if (tcpFlagClass(flags) !== TCP_FLAG_CLASS_SYN) return;
    const ct = this.conntrack;
    const ref = ct.lookup(IpProtocol.TCP, dst, dport, src, sport, now);
    if (ref < 0 || (ref & 1) !== 1) return;
    const e = ref >> 1;
    const state = ct.stateOf(e);
    if (state >= TcpState.FIN_WAIT && state <= TcpState.CLOSE) ct.remove(e);
  }

  /**
   * Builds the answer to a REJECT_* verdict for the packet still in `buf` into `out`
   * at `outOff` (an IPv4 packet, or an Ethernet frame with `link` or when the packet
   * came over Ethernet). Returns its length, or 0 when no answer is due (a reset is
   * never answered; ICMP errors follow RFC 1812's rules). Slow path: it allocates.
   */
  buildReject(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, link?: EthernetRepr): number {
    const v = this.result.verdict;
    if (v === Verdict.REJECT_TCP_RST) return emitTcpReset(out, outOff, info, buf, link);
    if (v === Verdict.REJECT_ICMP && icmpErrorAllowed(info, buf)) return emitIcmpv4PortUnreachable(out, outOff, info, buf, link);
    return 0;
  }

  #newFlow(info: PacketInfo, buf: Uint8Array, entryPoint: number, l4Partial: boolean, now: number,
    proto: number, src: number, sport: number, dst: number, dport: number, flags: number): number {
    const t = this.#table;
    const r = this.result;
    let fe = t.frontends.get(dst, proto, dport);
    if (fe < 0 && t.nodePortAddresses.get(dst) >= 0) fe = t.frontends.get(NODE_PORT_ADDR, proto, dport);
    if (fe < 0) {
      if (t.clusterIPs.get(dst) >= 0) return this.result.reject(proto, NatReason.UNKNOWN_PORT);
      if (proto === IpProtocol.TCP) this.#releaseReplyTuple(src, sport, dst, dport, flags, now);
      return this.result.record(Verdict.PASS);
    }
    const sp = fe >> 2;
    const kind = fe & 3;
    r.servicePort = sp;
    r.frontend = kind;
    const portFlags = t.flags[sp]!;
    if ((portFlags & PortFlag.HAS_ENDPOINTS) === 0) return this.result.reject(proto, NatReason.NO_ENDPOINTS);
    if (kind === FrontendKind.LOAD_BALANCER && t.rangeCount[sp]! > 0 && !this.#inSourceRanges(sp, src)) return this.result.drop(NatReason.SOURCE_RANGE);

    // Which endpoint list, and whether the source must be rewritten.
    const policy = servicePolicy(kind, portFlags, entryPoint, this.#masqueradeAll);
    const external = (policy & POLICY_EXTERNAL) !== 0;
    let masq = policy & ~POLICY_EXTERNAL;
    r.external = external;
    const start = external ? t.externalStart[sp]! : t.clusterStart[sp]!;
    const count = external ? t.externalCount[sp]! : t.clusterCount[sp]!;
    if (count === 0) return this.result.drop(NatReason.NO_LOCAL_ENDPOINTS);
    // Linux opens TCP flows on a SYN, or picks one up mid-stream on an ACK; a FIN,
    // RST or SYN-ACK of no known flow is INVALID (and kube-proxy drops INVALID).
    if (proto === IpProtocol.TCP && tcpTransition(TcpState.NONE, 0, flags) === TCP_INVALID) return this.result.drop(NatReason.TCP_NOT_NEW);

    const ep = this.#choose(sp, external, start, count, proto, src, sport, dst, dport, now);
    const epIP = t.endpointIP[ep]! | 0;
    const epPort = t.endpointPort[ep]!;
    r.endpoint = ep;
    if (masq === MasqReason.NONE && epIP === src) masq = MasqReason.HAIRPIN;
    r.masquerade = masq;
    const snatIP = masq === MasqReason.NONE ? src : masq === MasqReason.HAIRPIN ? this.#hairpinIP | 0 : this.#masqueradeIP | 0;

    // The reply tuple must be unique: keep the client's port when free, else pick another.
    const ct = this.conntrack;
    let snatPort = sport;
    if (ct.lookup(proto, epIP, epPort, snatIP, snatPort, now) >= 0) {
      snatPort = -1;
      for (let k = 0; k < SNAT_PORT_TRIES && snatPort < 0; k++) {
        const p = SNAT_PORT_MIN + xorshift(this.#rng, 65536 - SNAT_PORT_MIN);
        if (ct.lookup(proto, epIP, epPort, snatIP, p, now) < 0) snatPort = p;
      }
      if (snatPort < 0) return this.result.drop(NatReason.SNAT_PORTS_EXHAUSTED);
    }
    const e = ct.insert(proto, src, sport, dst, dport, epIP, epPort, snatIP, snatPort, now);
    if (e < 0) return this.result.drop(e === CONNTRACK_SOURCE_LIMITED ? NatReason.CONNTRACK_SOURCE_LIMIT : NatReason.CONNTRACK_FULL);
    ct.setTag(e, this.#ids[sp]!);
    ct.mark(e, snatIP !== src || snatPort !== sport ? EntryStatus.DST_NAT | EntryStatus.SRC_NAT : EntryStatus.DST_NAT);
    ct.update(e, 0, flags, now);
    r.entry = e;
    r.direction = 0;
    r.newFlow = true;
    translateFlow(this.conntrack, info, buf, e, 0, l4Partial);
    return this.result.record(Verdict.NATED);
  }

  /** Endpoint for a new flow: ClientIP affinity if it holds, else Maglev or random. Returns its index. */
  #choose(sp: number, external: boolean, start: number, count: number, proto: number, src: number, sport: number, dst: number, dport: number, now: number): number {
    const t = this.#table;
    const r = this.result;
    const timeout = t.affinityTimeout[sp]!;
    const id = this.#ids[sp]!;
    if (timeout > 0) {
      const aff = this.affinity;
      const slot = aff.lookup(id, src, now);
      if (slot >= 0) {
        // An entry pointing to an endpoint the list no longer has is ignored.
        const ip = aff.endpointIP[slot]!;
        const port = aff.endpointPort[slot]!;
        for (let k = start; k < start + count; k++) {
          if (t.endpointIP[k] === ip && t.endpointPort[k] === port) {
            r.lb = LbChoice.AFFINITY;
            aff.record(id, src, t.endpointIP[k]! | 0, port, now + timeout, now);
            return k;
          }
        }
      }
    }
    const maglev = external ? t.externalMaglev[sp]! : t.clusterMaglev[sp]!;
    let k: number;
    if (maglev >= 0) {
      const size = external ? t.externalMaglevSize[sp]! : t.clusterMaglevSize[sp]!;
      k = start + t.maglev[maglev + (flowHash(MAGLEV_FLOW_SEED, proto, src, sport, dst, dport) % size)]!;
      r.lb = LbChoice.MAGLEV;
    } else {
      k = start + xorshift(this.#rng, count);
      r.lb = LbChoice.RANDOM;
    }
    if (timeout > 0) this.affinity.record(id, src, t.endpointIP[k]! | 0, t.endpointPort[k]!, now + timeout, now);
    return k;
  }

  /**
   * An ICMP error quoting a packet of a tracked flow. The quoted packet went the other
   * way, so its tuple reversed is the flow's tuple in the error's direction.
   */
  #icmpError(info: PacketInfo, buf: Uint8Array, now: number): number {
    const p = info.origProtocol;
    if (p !== IpProtocol.TCP && p !== IpProtocol.UDP) return this.result.record(Verdict.PASS);
    const ct = this.conntrack;
    const ref = ct.lookup(p, info.origDst4 | 0, info.origDstPort, info.origSrc4 | 0, info.origSrcPort, now);
    if (ref < 0) return this.result.record(Verdict.PASS);
    const r = this.result;
    r.entry = ref >> 1;
    r.direction = ref & 1;
    r.icmpError = true;
    translateIcmpError(ct, info, buf, ref >> 1, ref & 1);
    return this.result.record(Verdict.NATED);
  }

  #inSourceRanges(sp: number, src: number): boolean {
    const t = this.#table;
    const end = t.rangeStart[sp]! + t.rangeCount[sp]!;
    for (let k = t.rangeStart[sp]!; k < end; k++) if ((src & t.rangeMask[k]!) === t.rangeNet[k]) return true;
    return false;
  }
}
