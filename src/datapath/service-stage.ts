// The service proxy's place in the pipeline: every IPv4 packet from a pod, from the
// host port and from the underlay passes ServiceNat.process here before it is routed,
// and every IPv6 one ServiceNat6.process (process6). One place for the calls, for the
// clock they are given and for what a refusal costs.
import { ETHERNET_HEADER_LENGTH as ETH, IpProtocol, VIRTIO_NET_HEADER_LENGTH, type PacketInfo } from '../wire/index.ts';
import { Verdict } from '../services/nat-codes.ts';
import type { ServiceNat } from '../services/nat.ts';
import type { ServiceNat6 } from '../services/nat6.ts';
import type { Arena } from './arena.ts';
import { DatapathDrop, type PortCounters } from './counters.ts';
import type { FrameSink } from './offload.ts';

// CLOCK_MONOTONIC in seconds, the same in every process of this boot: conntrack and
// affinity expiry times live in a flow store that the next agent takes over, so they
// must be on a clock that does not restart with the process (performance.now() does).
// process.hrtime is CLOCK_MONOTONIC but allocates; performance.now() is the same clock
// from another origin, so the origin is measured once. performance.now() returns a new
// heap number unless TurboFan inlines the call, as it does in the per-batch tick() of
// the receive loops (test/datapath-alloc*.test.ts); called from a closure or a loop the
// optimiser does not inline it into, it allocates (Node 24).
const MONOTONIC_ORIGIN_S = Number(process.hrtime.bigint()) / 1e9 - performance.now() / 1000;

/** Whole seconds of CLOCK_MONOTONIC (since boot); allocation-free where inlined (above). */
export function monotonicSeconds(): number {
  return (MONOTONIC_ORIGIN_S + performance.now() / 1000) | 0;
}

/** `replyPort` for packets whose refusal is only counted (the underlay has no port to answer on). */
export const NO_REPLY = -1;
/** Room for the answer behind its Ethernet header: an ICMP error is at most 576 bytes (RFC 1812 §4.3.2.3), a TCP RST far less. */
const REJECT_BYTES = ETH + 600;

export class ServiceStage {
  /** The service proxy, once services are programmed; null = no service NAT at all. */
  nat: ServiceNat | null = null;
  /** The IPv6 service proxy; null = IPv6 packets pass untranslated. */
  nat6: ServiceNat6 | null = null;
  /** Monotonic whole seconds, read once per batch (conntrack and affinity expiry). */
  #now = 0;
  readonly #arena: Arena;
  readonly #sink: FrameSink;

  constructor(arena: Arena, sink: FrameSink) {
    this.#arena = arena;
    this.#sink = sink;
  }

  /** Reads the clock: once per receive batch, so every packet of a batch sees one time. */
  tick(): void {
    this.#now = monotonicSeconds();
  }

  /**
   * Conntrack garbage collection, a slice of `maxScan` entries, on the same monotonic
   * clock the packets use: the clock stays in here, so no caller can hand conntrack
   * another (wall-clock seconds would expire every flow at once).
   */
  expire(maxScan: number): number {
    this.tick();
    const nat = this.nat;
    const nat6 = this.nat6;
    return (nat === null ? 0 : nat.expire(this.#now, maxScan)) + (nat6 === null ? 0 : nat6.expire(this.#now, maxScan));
  }

  /**
   * Runs the packet decoded in `info` (in the arena) through the service proxy.
   * PASS and NATED: forward it (rewritten in place when NATED). A refusal (REJECT_*,
   * DROP) has been dealt with when this returns: counted on `c`, and a REJECT answered
   * with a TCP RST or ICMP port unreachable, built in scratch, on `replyPort` unless
   * that is NO_REPLY. `l4Partial`: the frame carries virtio-net NEEDS_CSUM.
   *
   * Small on purpose: it is inlined into every receive path, whose inlining budget
   * (TurboFan's, per optimised function) it shares. With the refusal handling in
   * here, the underlay's TTL decrement stopped being inlined (--trace-turbo-inlining);
   * refusals are rare and get a call of their own.
   */
  process(info: PacketInfo, entryPoint: number, l4Partial: boolean, c: PortCounters, replyPort: number): number {
    const nat = this.nat;
    if (nat === null) return Verdict.PASS;
    const v = nat.process(info, this.#arena.buf, entryPoint, l4Partial, this.#now);
    if (v > Verdict.NATED) this.#refused(nat, v, info, c, replyPort);
    return v;
  }

  /** process() for a decoded IPv6 packet, through the IPv6 service proxy. */
  process6(info: PacketInfo, entryPoint: number, l4Partial: boolean, c: PortCounters, replyPort: number): number {
    const nat = this.nat6;
    if (nat === null) return Verdict.PASS;
    const v = nat.process(info, this.#arena.buf, entryPoint, l4Partial, this.#now);
    if (v > Verdict.NATED) this.#refused(nat, v, info, c, replyPort);
    return v;
  }

  /** tracks() for a decoded IPv6 packet. Slow path. */
  tracks6(info: PacketInfo): boolean {
    const nat = this.nat6;
    return nat !== null && nat.tracks(info, this.#arena.buf, this.#now);
  }

  /** Whether the packet belongs to a flow the service conntrack knows (either way). Slow path. */
  tracks(info: PacketInfo): boolean {
    const nat = this.nat;
    if (nat === null || info.payloadOffset < 0) return false;
    if (info.protocol !== IpProtocol.TCP && info.protocol !== IpProtocol.UDP) return false;
    return nat.conntrack.lookup(info.protocol, info.src4 | 0, info.srcPort, info.dst4 | 0, info.dstPort, this.#now) >= 0;
  }

  #refused(nat: ServiceNat | ServiceNat6, v: number, info: PacketInfo, c: PortCounters, replyPort: number): void {
    if (v === Verdict.DROP) {
      c.drops[DatapathDrop.SERVICE_DROPPED]!++;
      return;
    }
    c.drops[DatapathDrop.SERVICE_REJECTED]!++;
    if (replyPort === NO_REPLY) return;
    const b = this.#arena.buf;
    const at = this.#arena.allocFrame(REJECT_BYTES);
    if (at < 0) return;
    const n = nat.buildReject(b, at + VIRTIO_NET_HEADER_LENGTH, info, b);
    if (n > 0) this.#sink.enqueue(replyPort, at, VIRTIO_NET_HEADER_LENGTH + n);
  }
}
