// The transmit side of the VXLAN overlay: frames for other nodes are wrapped in place
// (or cut into segments in scratch) and queued for the underlay socket, which sends the
// whole queue with one sendmmsg per batch.
import type { UdpBatchSocket } from '../device/udp.ts';
import { VirtioNetFlags, VirtioNetGso, VxlanHeader, VXLAN_PORT } from '../wire/index.ts';
import { UnderlayTxQueue, type Arena } from './arena.ts';
import type { PortCapture } from './capture.ts';
import { DatapathDrop, PortCounters } from './counters.ts';
import { completeChecksum, segmentTcp4ToVxlan } from './offload.ts';

/** What the datapath needs of the underlay socket (UdpBatchSocket, or a fake in tests). */
export type UnderlaySocket = Pick<UdpBatchSocket, 'gsoSupported' | 'recvBatch' | 'sendBatch' | 'onReadable' | 'pause' | 'close'>;

export class OverlayTx {
  readonly counters = new PortCounters();
  capture: PortCapture | null = null;
  readonly #arena: Arena;
  readonly #socket: UnderlaySocket | null;
  readonly #queue = new UnderlayTxQueue(512);
  /** Flushes every queue of the datapath and frees scratch (segments live in scratch). */
  readonly #flushAll: () => void;

  constructor(arena: Arena, socket: UnderlaySocket | null, flushAll: () => void) {
    this.#arena = arena;
    this.#socket = socket;
    this.#flushAll = flushAll;
  }

  /**
   * Sends the Ethernet frame at `e` (its virtio-net header at `vh`) over VXLAN with
   * `vni` to the node at `underlay[node]`. TSO frames are cut into segments and partial
   * checksums completed in software: nothing past this node would do it. Returns 0, or
   * the drop reason. (Addresses above 2^31 stay inside typed arrays until used: passed
   * as arguments they would be boxed, an allocation per packet.)
   */
  send(vh: number, e: number, frameLen: number, underlay: Uint32Array, node: number, vni: number): number {
    const dst = underlay[node]!;
    const a = this.#arena;
    const b = a.buf;
    const q = this.#queue;
    const gso = b[vh + 1]! & ~VirtioNetGso.ECN;
    if (gso !== VirtioNetGso.NONE) {
      if (gso !== VirtioNetGso.TCPV4) return DatapathDrop.UNSUPPORTED_GSO;
      const mss = b[vh + 4]! | (b[vh + 5]! << 8);
      const udpGso = this.#socket?.gsoSupported ?? false;
      if (segmentTcp4ToVxlan(a, e, frameLen, mss, vni, dst, VXLAN_PORT, q, udpGso)) return 0;
      this.#flushAll();
      return segmentTcp4ToVxlan(a, e, frameLen, mss, vni, dst, VXLAN_PORT, q, udpGso) ? 0 : DatapathDrop.NO_SCRATCH;
    }
    if ((b[vh]! & VirtioNetFlags.NEEDS_CSUM) !== 0) {
      const start = b[vh + 6]! | (b[vh + 7]! << 8);
      const offset = b[vh + 8]! | (b[vh + 9]! << 8);
      if (!completeChecksum(b, e, frameLen, start, offset)) return DatapathDrop.BAD_VNET_HEADER;
    }
    if (q.full) this.flush();
    VxlanHeader.emit(b, e - 8, vni);
    q.pushDatagram(e - 8, frameLen + 8, dst, VXLAN_PORT, 0);
    return 0;
  }

  /** This node's underlay address (the source of captured datagrams). */
  readonly localIP = new Uint32Array(1);

  /** Sends everything queued. */
  flush(): void {
    const q = this.#queue;
    if (q.count === 0 || this.#socket === null) {
      q.count = 0;
      return;
    }
    const b = this.#arena.buf;
    const c = this.counters;
    const cap = this.capture;
    if (cap !== null) cap.stamp(Date.now());
    for (let i = 0; i < q.count; i++) {
      c.txBytes += q.lengths[i]!;
      if (cap !== null) cap.datagrams(b, q.offsets[i]!, q.lengths[i]!, q.gsoSizes[i]!, this.localIP[0]!, q.dstAddrs[i]!);
    }
    const sent = this.#socket.sendBatch(b, q.offsets, q.lengths, q.dstAddrs, q.dstPorts, q.gsoSizes, q.count);
    c.txFrames += sent;
    if (sent < q.count) c.drops[DatapathDrop.TX_FAILED]! += q.count - sent;
    q.count = 0;
  }
}
