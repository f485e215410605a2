// A userspace host on a TAP: answers ARP for its address and ICMP echo requests to it,
// everything in place in the receive buffer (RFC 826 reply; RFC 792 echo reply with the
// checksum moved by RFC 1624's incremental update). The smallest real user of the
// device and wire layers (with the agent's own in-place answers): `tapir demo` and the
// foundation's end-to-end test.
import type { FrameDevice } from '../device/types.ts';
import { arpReplyInPlace, echoReplyInPlace } from '../datapath/answers.ts';
import { ArpOp, DropReason, EtherType, IpProtocol, Icmpv4Type, LinkType, PacketInfo, decodeFrame } from '../wire/index.ts';

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
  readonly #buf = Buffer.alloc(SLOTS * SLOT_SIZE);
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
      // The demo's TAP has no virtio-net header (0 bytes in front of the frame).
      arpReplyInPlace(b, info, off, 0, this.ip, this.mac);
      this.counts.arpReplies++;
      return true;
    }
    if (info.ethertype === EtherType.IPV4 && info.dst4 === this.ip && info.protocol === IpProtocol.ICMP && info.icmpType === Icmpv4Type.ECHO_REQUEST) {
      echoReplyInPlace(b, info, off, 0, this.mac);
      this.counts.echoReplies++;
      return true;
    }
    this.counts.ignored++;
    return false;
  }
}
