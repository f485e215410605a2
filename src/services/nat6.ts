// The IPv6 service NAT engine (NAT66): ServiceNat's semantics for the IPv6 half of
// dual-stack and IPv6 Services, decided per packet in TypeScript without allocating.
// The same order as IPv4's (an ICMPv6 error about a tracked flow, a packet of a tracked
// flow, the first packet of a flow to a frontend, or PASS), the same endpoint lists and
// masquerade rules (servicePolicy, nat-codes.ts), the same verdicts, reasons and
// NatResult, so counters, logs and `tapir trace` read both families alike. No IPv4 to
// IPv6 translation: each family's packets meet only that family's Services.
//
// What differs is the width of an address. A packet's two addresses are loaded once
// into #addr (four big-endian int32 words each) and cross every call as (array, index)
// pairs; conntrack and affinity tables of family 6 key by the full 128 bits
// (src/tables/conntrack.ts, affinity.ts). The service table names a frontend address
// by a small number (frontendAddrs6) and an endpoint by its words (endpointIP6) plus a
// digest (endpointIP), which Maglev hashes as IPv4's hashes the address.
//
// Masquerading uses one address of this node that every endpoint routes back here over
// the overlay: the node's IPv6 pod gateway (inside its podCIDRv6), the same address the
// node's own stack uses towards pods; a pod reaching itself through its service is
// masqueraded to it too (hairpin).
import {
  IpProtocol, emitIcmpv6PortUnreachable, emitTcpReset, icmpErrorAllowed, loadIpv6Words, sameIpv6Words, type EthernetRepr, type PacketInfo,
} from '../wire/index.ts';
import { AffinityTable, AFFINITY_DEFAULT_CAPACITY } from '../tables/affinity.ts';
import { CONNTRACK_SOURCE_LIMITED, Conntrack, EntryStatus} from '../tables/conntrack.ts';
import { MAGLEV_FLOW_SEED, address6Digest, flowHash } from '../tables/hash.ts';
import { FrontendKind, NODE_PORT_ADDR } from '../tables/service-frontends.ts';
import { PortFlag, type ServiceTable } from '../tables/service-table.ts';
import { TCP_FLAG_CLASS_SYN, TCP_INVALID, TcpState, tcpFlagClass, tcpReopens, tcpTransition } from '../tables/tcp-state.ts';
import { LbChoice, MasqReason, NatReason, POLICY_EXTERNAL, Verdict, servicePolicy } from './nat-codes.ts';
import { NatResult, xorshift } from './nat-result.ts';
import type { ServiceNatOptions } from './nat.ts';
import { ServicePortIds, type ServiceIds } from './service-ids.ts';
import { tableSwap } from './table-diff.ts';
import { translateFlow6, translateIcmpError6 } from './translate6.ts';

const SNAT_PORT_TRIES = 16;
const SNAT_PORT_MIN = 1024;

// #addr: the packet's source (0..3) and destination (4..7). #tuple (insert6's layout):
// original source 0..3, destination 4..7, ports 8; reply source 9..12, destination 13..16, ports 17.
const SRC = 0;
const DST = 4;
const T_ORIG_PORTS = 8;
const T_REPLY_SRC = 9;
const T_REPLY_DST = 13;
const T_REPLY_PORTS = 17;

/**
 * ServiceNatOptions for IPv6: one source address for masqueraded and hairpin flows; the
 * flow store's IPv6 regions hold the conntrack and affinity, the ids are the IPv6 ports'.
 */
export interface ServiceNat6Options extends Omit<ServiceNatOptions, 'masqueradeIP' | 'hairpinIP'> {
  /** 16 bytes: the node's IPv6 pod gateway. */
  masqueradeIP: Uint8Array;
}
function copy6(to: Int32Array, at: number, from: Int32Array, fromAt: number): void {
  to[at] = from[fromAt]!; to[at + 1] = from[fromAt + 1]!; to[at + 2] = from[fromAt + 2]!; to[at + 3] = from[fromAt + 3]!;
}

export class ServiceNat6 {
  readonly conntrack: Conntrack;
  readonly affinity: AffinityTable;
  readonly result = new NatResult();
  readonly verdicts = this.result.verdicts;
  readonly reasons = this.result.reasons;
  readonly #masq = new Int32Array(4);
  readonly #masqueradeAll: boolean;
  readonly #rng = new Int32Array(1);
  readonly #addr = new Int32Array(8);
  readonly #tuple = new Int32Array(18);
  #table: ServiceTable<string>;
  #ids: Int32Array;
  readonly #portIds: ServicePortIds;

  constructor(table: ServiceTable<string>, options: ServiceNat6Options) {
    if (table.family !== 6) throw new RangeError('ServiceNat6 takes an IPv6 service table (buildServiceTable6)');
    if (options.masqueradeIP.length !== 16) throw new RangeError('ServiceNat6: masqueradeIP must be 16 bytes');
    loadIpv6Words(this.#masq, 0, options.masqueradeIP, 0);
    this.#masqueradeAll = options.masqueradeAll ?? false;
    const store = options.store;
    if (store === undefined) {
      this.conntrack = new Conntrack({ ...options.conntrack, family: 6 });
      this.affinity = new AffinityTable(options.affinityCapacity ?? AFFINITY_DEFAULT_CAPACITY, undefined, 6);
    } else {
      this.conntrack = new Conntrack({
        ...options.conntrack,
        family: 6,
        capacity: store.conntrack6Capacity,
        memory: { buffer: store.buffer, byteOffset: store.conntrack6Offset, addresses6Offset: store.addresses6Offset, restore: !store.fresh },
      });
      this.affinity = new AffinityTable(store.affinity6Slots, {
        buffer: store.buffer, byteOffset: store.affinity6Offset, slots: store.affinity6Slots, restore: !store.fresh,
      }, 6);
    }
    this.#portIds = new ServicePortIds(options.serviceIds);
    if (this.conntrack.restored > 0) for (const e of this.conntrack.entries()) this.#portIds.reserve(this.conntrack.tagOf(e));
    this.#rng[0] = (options.seed ?? Math.floor(Math.random() * 0x7fffffff)) | 1;
    this.#table = table;
    this.#ids = options.serviceIds !== undefined ? new Int32Array(table.count) : this.#portIds.assign(table);
  }

  get table(): ServiceTable<string> {
    return this.#table;
  }

  get idsVersion(): number {
    return this.#portIds.version;
  }

  serviceIds(): ServiceIds {
    return this.#portIds.snapshot();
  }

  serviceId(index: number): number {
    return this.#ids[index]!;
  }

  /** As ServiceNat.setTable: swaps in a new IPv6 table; UDP flows to endpoints it lost are flushed. */
  setTable(table: ServiceTable<string>): number {
    if (table.family !== 6) throw new RangeError('ServiceNat6 takes an IPv6 service table (buildServiceTable6)');
    const { ids, stale } = tableSwap(this.#table, this.#ids, table, this.#portIds);
    this.#table = table;
    this.#ids = ids;
    if (stale.size === 0) return 0;
    const ct = this.conntrack;
    const A = ct.addresses6;
    return ct.flush((e) => {
      if (ct.protocolOf(e) !== IpProtocol.UDP) return false;
      const ref = e * 2 + 1;
      const at = ct.address6At(ref, 0);
      const digest = address6Digest(A, at);
      return stale.has(`${ct.tagOf(e)}/${digest >>> 0}/${ct.tuple6(ref).srcPort}`);
    });
  }

  expire(now: number, maxScan = 1024): number {
    return this.conntrack.expire(now, maxScan);
  }

  /** Whether the decoded IPv6 packet belongs to a flow conntrack knows (either way). Slow path. */
  tracks(info: PacketInfo, buf: Uint8Array, now: number): boolean {
    if (info.ipVersion !== 6 || info.payloadOffset < 0) return false;
    if (info.protocol !== IpProtocol.TCP && info.protocol !== IpProtocol.UDP) return false;
    const a = this.#addr;
    loadIpv6Words(a, SRC, buf, info.src6Offset);
    loadIpv6Words(a, DST, buf, info.dst6Offset);
    return this.conntrack.lookup6(info.protocol, a, SRC, info.srcPort, DST, info.dstPort, now) >= 0;
  }

  /** ServiceNat.process for a decoded IPv6 packet. */
  process(info: PacketInfo, buf: Uint8Array, entryPoint: number, l4Partial: boolean, now: number): number {
    const r = this.result;
    r.reset();
    if (info.ipVersion !== 6) return this.result.record(Verdict.PASS);
    const proto = info.protocol;
    if (proto === IpProtocol.ICMPV6) return info.origL4Offset >= 0 ? this.#icmpError(info, buf, now) : this.result.record(Verdict.PASS);
    if (proto !== IpProtocol.TCP && proto !== IpProtocol.UDP) return this.result.record(Verdict.PASS);
    const a = this.#addr;
    loadIpv6Words(a, SRC, buf, info.src6Offset);
    loadIpv6Words(a, DST, buf, info.dst6Offset);
    if (info.payloadOffset < 0 || info.isFragment) {
      const key = this.#frontendKey();
      return key >= 0 && this.#table.frontendIPs.get(key) >= 0 ? this.result.drop(NatReason.FRAGMENT) : this.result.record(Verdict.PASS);
    }
    const sport = info.srcPort;
    const dport = info.dstPort;
    const flags = proto === IpProtocol.TCP ? info.tcpFlags : 0;
    const ct = this.conntrack;
    const ref = ct.lookup6(proto, a, SRC, sport, DST, dport, now);
    if (ref >= 0) {
      const e = ref >> 1;
      const dir = ref & 1;
      if (proto !== IpProtocol.TCP || !tcpReopens(ct.stateOf(e), dir, flags)) {
        ct.update(e, dir, flags, now);
        r.entry = e;
        r.direction = dir;
        translateFlow6(ct, info, buf, e, dir, l4Partial, a);
        return this.result.record(Verdict.NATED);
      }
      ct.remove(e);
    }
    return this.#newFlow(info, buf, entryPoint, l4Partial, now, proto, this.#frontendKey(), sport, dport, flags);
  }

  /** The number of the packet's destination (#addr) among the table's frontend addresses, or -1 (new flows only: an established one never asks). */
  #frontendKey(): number {
    const a = this.#addr;
    return this.#table.frontendAddrs6.getWords(a[DST]!, a[DST + 1]!, a[DST + 2]!, a[DST + 3]!);
  }

  /** ServiceNat.buildReject for IPv6: a TCP reset, or ICMPv6 port unreachable (RFC 4443 §3.1 code 4). */
  buildReject(out: Uint8Array, outOff: number, info: PacketInfo, buf: Uint8Array, link?: EthernetRepr): number {
    const v = this.result.verdict;
    if (v === Verdict.REJECT_TCP_RST) return emitTcpReset(out, outOff, info, buf, link);
    if (v === Verdict.REJECT_ICMP && icmpErrorAllowed(info, buf)) return emitIcmpv6PortUnreachable(out, outOff, info, buf, link);
    return 0;
  }

  #newFlow(info: PacketInfo, buf: Uint8Array, entryPoint: number, l4Partial: boolean, now: number,
    proto: number, dstKey: number, sport: number, dport: number, flags: number): number {
    const t = this.#table;
    const r = this.result;
    const a = this.#addr;
    let fe = dstKey >= 0 ? t.frontends.get(dstKey, proto, dport) : -1;
    if (fe < 0 && dstKey >= 0 && t.nodePortAddresses.get(dstKey) >= 0) fe = t.frontends.get(NODE_PORT_ADDR, proto, dport);
    if (fe < 0) {
      if (dstKey >= 0 && t.clusterIPs.get(dstKey) >= 0) return this.result.reject(proto, NatReason.UNKNOWN_PORT);
      if (proto === IpProtocol.TCP) this.#releaseReplyTuple(sport, dport, flags, now);
      return this.result.record(Verdict.PASS);
    }
    const sp = fe >> 2;
    const kind = fe & 3;
    r.servicePort = sp;
    r.frontend = kind;
    const portFlags = t.flags[sp]!;
    if ((portFlags & PortFlag.HAS_ENDPOINTS) === 0) return this.result.reject(proto, NatReason.NO_ENDPOINTS);
    if (kind === FrontendKind.LOAD_BALANCER && t.rangeCount[sp]! > 0 && !this.#inSourceRanges(sp)) return this.result.drop(NatReason.SOURCE_RANGE);

    const policy = servicePolicy(kind, portFlags, entryPoint, this.#masqueradeAll);
    const external = (policy & POLICY_EXTERNAL) !== 0;
    let masq = policy & ~POLICY_EXTERNAL;
    r.external = external;
    const start = external ? t.externalStart[sp]! : t.clusterStart[sp]!;
    const count = external ? t.externalCount[sp]! : t.clusterCount[sp]!;
    if (count === 0) return this.result.drop(NatReason.NO_LOCAL_ENDPOINTS);
    if (proto === IpProtocol.TCP && tcpTransition(TcpState.NONE, 0, flags) === TCP_INVALID) return this.result.drop(NatReason.TCP_NOT_NEW);

    const ep = this.#choose(sp, external, start, count, proto, sport, dport, now);
    const E = t.endpointIP6;
    const epAt = ep * 4;
    const epPort = t.endpointPort[ep]!;
    r.endpoint = ep;
    if (masq === MasqReason.NONE && sameIpv6Words(E, epAt, a, SRC)) masq = MasqReason.HAIRPIN;
    r.masquerade = masq;

    // The tuple to insert: original as the client sent it, reply as the endpoint will send it.
    const tu = this.#tuple;
    copy6(tu, SRC, a, SRC);
    copy6(tu, DST, a, DST);
    tu[T_ORIG_PORTS] = (sport << 16) | dport;
    copy6(tu, T_REPLY_SRC, E, epAt);
    if (masq === MasqReason.NONE) copy6(tu, T_REPLY_DST, a, SRC);
    else copy6(tu, T_REPLY_DST, this.#masq, 0);
    const ct = this.conntrack;
    let snatPort = sport;
    if (ct.lookup6(proto, tu, T_REPLY_SRC, epPort, T_REPLY_DST, snatPort, now) >= 0) {
      snatPort = -1;
      for (let k = 0; k < SNAT_PORT_TRIES && snatPort < 0; k++) {
        const p = SNAT_PORT_MIN + xorshift(this.#rng, 65536 - SNAT_PORT_MIN);
        if (ct.lookup6(proto, tu, T_REPLY_SRC, epPort, T_REPLY_DST, p, now) < 0) snatPort = p;
      }
      if (snatPort < 0) return this.result.drop(NatReason.SNAT_PORTS_EXHAUSTED);
    }
    tu[T_REPLY_PORTS] = (epPort << 16) | snatPort;
    const e = ct.insert6(proto, tu, now);
    if (e < 0) return this.result.drop(e === CONNTRACK_SOURCE_LIMITED ? NatReason.CONNTRACK_SOURCE_LIMIT : NatReason.CONNTRACK_FULL);
    ct.setTag(e, this.#ids[sp]!);
    ct.mark(e, masq !== MasqReason.NONE || snatPort !== sport ? EntryStatus.DST_NAT | EntryStatus.SRC_NAT : EntryStatus.DST_NAT);
    ct.update(e, 0, flags, now);
    r.entry = e;
    r.direction = 0;
    r.newFlow = true;
    translateFlow6(ct, info, buf, e, 0, l4Partial, a);
    return this.result.record(Verdict.NATED);
  }

  /** ServiceNat's #choose over the client address in #addr: ClientIP affinity, else Maglev or random. */
  #choose(sp: number, external: boolean, start: number, count: number, proto: number, sport: number, dport: number, now: number): number {
    const t = this.#table;
    const r = this.result;
    const a = this.#addr;
    const timeout = t.affinityTimeout[sp]!;
    const id = this.#ids[sp]!;
    if (timeout > 0) {
      const aff = this.affinity;
      const slot = aff.lookup6(id, a, SRC, now);
      if (slot >= 0) {
        // An entry naming an endpoint the list no longer has is ignored (endpoints by digest and port).
        const ip = aff.endpointIP[slot]!;
        const port = aff.endpointPort[slot]!;
        for (let k = start; k < start + count; k++) {
          if (t.endpointIP[k] === ip && t.endpointPort[k] === port) {
            r.lb = LbChoice.AFFINITY;
            aff.record6(id, a, SRC, t.endpointIP[k]! | 0, port, now + timeout, now);
            return k;
          }
        }
      }
    }
    const maglev = external ? t.externalMaglev[sp]! : t.clusterMaglev[sp]!;
    let k: number;
    if (maglev >= 0) {
      const size = external ? t.externalMaglevSize[sp]! : t.clusterMaglevSize[sp]!;
      // The addresses by their digests: the same on every node, like IPv4's addresses.
      const s = address6Digest(a, SRC);
      const d = address6Digest(a, DST);
      k = start + t.maglev[maglev + (flowHash(MAGLEV_FLOW_SEED, proto, s, sport, d, dport) % size)]!;
      r.lb = LbChoice.MAGLEV;
    } else {
      k = start + xorshift(this.#rng, count);
      r.lb = LbChoice.RANDOM;
    }
    if (timeout > 0) this.affinity.record6(id, a, SRC, t.endpointIP[k]! | 0, t.endpointPort[k]!, now + timeout, now);
    return k;
  }

  /** ServiceNat's #releaseReplyTuple: a direct SYN meeting a closing service flow's reply tuple replaces it. */
  #releaseReplyTuple(sport: number, dport: number, flags: number, now: number): void {
    if (tcpFlagClass(flags) !== TCP_FLAG_CLASS_SYN) return;
    const ct = this.conntrack;
    const ref = ct.lookup6(IpProtocol.TCP, this.#addr, DST, dport, SRC, sport, now);
    if (ref < 0 || (ref & 1) !== 1) return;
    const e = ref >> 1;
    const state = ct.stateOf(e);
    if (state >= TcpState.FIN_WAIT && state <= TcpState.CLOSE) ct.remove(e);
  }

  /** An ICMPv6 error quoting a packet of a tracked flow (its tuple reversed is the flow's in the error's direction). */
  #icmpError(info: PacketInfo, buf: Uint8Array, now: number): number {
    const p = info.origProtocol;
    if (p !== IpProtocol.TCP && p !== IpProtocol.UDP) return this.result.record(Verdict.PASS);
    const a = this.#addr;
    loadIpv6Words(a, SRC, buf, info.origDst6Offset);
    loadIpv6Words(a, DST, buf, info.origSrc6Offset);
    const ct = this.conntrack;
    const ref = ct.lookup6(p, a, SRC, info.origDstPort, DST, info.origSrcPort, now);
    if (ref < 0) return this.result.record(Verdict.PASS);
    const r = this.result;
    r.entry = ref >> 1;
    r.direction = ref & 1;
    r.icmpError = true;
    translateIcmpError6(ct, info, buf, ref >> 1, ref & 1);
    return this.result.record(Verdict.NATED);
  }

  #inSourceRanges(sp: number): boolean {
    const t = this.#table;
    const a = this.#addr;
    const net = t.rangeNet6;
    const mask = t.rangeMask6;
    const end = t.rangeStart[sp]! + t.rangeCount[sp]!;
    for (let k = t.rangeStart[sp]!; k < end; k++) {
      const at = k * 4;
      if ((a[SRC]! & mask[at]!) === net[at] && (a[SRC + 1]! & mask[at + 1]!) === net[at + 1]
        && (a[SRC + 2]! & mask[at + 2]!) === net[at + 2] && (a[SRC + 3]! & mask[at + 3]!) === net[at + 3]) return true;
    }
    return false;
  }
}
