// A userspace host on a TAP: answers ARP for its address and ICMP echo requests to it,
// everything in place in the receive buffer (RFC 826 reply; RFC 792 echo reply with the
// checksum moved by RFC 1624's incremental update). The smallest real user of the
// device and wire layers: `tapir demo` and the foundation's end-to-end test.
import type { FrameDevice } from '../device/types.ts';
import {
  ArpOp, DropReason, EtherType, IpProtocol, Icmpv4Type, LinkType, PacketInfo, decodeFrame,
  get16, set16, set32, set48, updateChecksum16,
} from '../wire/index.ts';

const SLOTS = 32;
const SLOT_SIZE = 2048;
const HEADROOM = 0;

export interface ResponderCounts {
  arpReplies: number;
  echoReplies: number;
  ignored: number;
  malformed: number;
}

export class ArpIcmpResponder {
  readonly ip: number;
  readonly mac: number;
  readonly counts: ResponderCounts = { arpReplies: 0, echoReplies: 0, ignored: 0, malformed: 0 };
  readonly #device: FrameDevice;
  readonly #buf = new Uint8Array(SLOTS * SLOT_SIZE);
  readonly #lengths = new Int32Array(SLOTS);
  readonly #offsets = new Int32Array(SLOTS);
  readonly #outLengths = new Int32Array(SLOTS);
  readonly #info = new PacketInfo();

  constructor(device: FrameDevice, ip: number, mac: number) {
    this.#device = device;
    this.ip = ip;
    this.mac = mac;
  }

  start(): void {
    this.#device.onReadable(() => this.#drain());
  }

  stop(): void {
    this.#device.pause();
  }

  #drain(): void {
    const b = this.#buf;
    for (;;) {
      const n = this.#device.readBatch(b, SLOT_SIZE, HEADROOM, this.#lengths, SLOTS);
      if (n === 0) return;
      let out = 0;
      for (let i = 0; i < n; i++) {
        const off = i * SLOT_SIZE + HEADROOM;
        if (this.#answer(off, this.#lengths[i]!)) {
          this.#offsets[out] = off;
          this.#outLengths[out++] = this.#lengths[i]!;
        }
      }
      if (out > 0) this.#device.writeBatch(b, this.#offsets, this.#outLengths, out);
    }
  }

  /** Rewrites the frame at `off` into its answer; false when it needs none. */
  #answer(off: number, len: number): boolean {
    const b = this.#buf;
    const info = this.#info;
    if (decodeFrame(info, b, off, len, LinkType.ETHERNET) !== DropReason.OK) {
      this.counts.malformed++;
      return false;
    }
    if (info.ethertype === EtherType.ARP && info.arpOp === ArpOp.REQUEST && info.arpTargetIp === this.ip) {
      const arp = info.l3Offset;
      set16(b, arp + 6, ArpOp.REPLY);
      b.copyWithin(arp + 18, arp + 8, arp + 18); // target <- the requester's MAC and IP
      set48(b, arp + 8, this.mac);
      set32(b, arp + 14, this.ip);
      this.#swapEthernet(off, info.ethSrc);
      this.counts.arpReplies++;
      return true;
    }
    if (info.ethertype === EtherType.IPV4 && info.dst4 === this.ip && info.protocol === IpProtocol.ICMP && info.icmpType === Icmpv4Type.ECHO_REQUEST) {
      const ip = info.l3Offset;
      set32(b, ip + 16, info.src4);
      set32(b, ip + 12, this.ip);
      const icmp = info.l4Offset;
      const old = get16(b, icmp);
      b[icmp] = Icmpv4Type.ECHO_REPLY;
      set16(b, icmp + 2, updateChecksum16(get16(b, icmp + 2), old, get16(b, icmp)));
      this.#swapEthernet(off, info.ethSrc);
      this.counts.echoReplies++;
      return true;
    }
    this.counts.ignored++;
    return false;
  }

  #swapEthernet(off: number, requester: number): void {
    set48(this.#buf, off, requester);
    set48(this.#buf, off + 6, this.mac);
  }
}
