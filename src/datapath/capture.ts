// `tapir capture`: copies the frames that pass one port into a pcap file while the
// agent runs. Pod ports are Ethernet, the host port raw IP; the underlay socket only
// sees UDP payloads (VXLAN), so outer Ethernet/IPv4/UDP headers are rebuilt around each
// datagram from the addresses the socket reported, and Wireshark decodes the VXLAN.
import { checksum, set16, set32, set48, VXLAN_PORT } from '../wire/index.ts';
import { PcapWriter } from '../pcap/index.ts';

const OUTER = 14 + 20 + 8;
// Placeholder MACs for the rebuilt outer Ethernet header (locally administered).
const OUTER_SRC_MAC = 0x02_00_00_00_00_01;
const OUTER_DST_MAC = 0x02_00_00_00_00_02;

export class PortCapture {
  readonly writer: PcapWriter;
  readonly #scratch: Buffer | null;
  #sec = 0;
  #nsec = 0;
  #ident = 0;

  constructor(writer: PcapWriter, underlay: boolean) {
    this.writer = writer;
    this.#scratch = underlay ? Buffer.alloc(OUTER + 65536) : null;
  }

  /** One clock reading per batch: frames of a batch share a timestamp. */
  stamp(nowMs: number): void {
    this.#sec = Math.floor(nowMs / 1000);
    this.#nsec = (nowMs % 1000) * 1_000_000;
  }

  frame(b: Uint8Array, off: number, len: number): void {
    this.writer.writeFrameAt(b, off, len, this.#sec, this.#nsec);
  }

  /** A VXLAN datagram (or a GSO/GRO train of `segment`-byte datagrams) with its outer addresses. */
  datagrams(b: Buffer, off: number, len: number, segment: number, src: number, dst: number): void {
    const step = segment > 0 ? segment : len;
    for (let at = off; at < off + len; at += step) this.#datagram(b, at, Math.min(step, off + len - at), src, dst);
  }

  #datagram(b: Buffer, off: number, len: number, src: number, dst: number): void {
    const s = this.#scratch!;
    set48(s, 0, OUTER_DST_MAC);
    set48(s, 6, OUTER_SRC_MAC);
    set16(s, 12, 0x0800);
    s[14] = 0x45; s[15] = 0;
    set16(s, 16, 20 + 8 + len);
    set16(s, 18, this.#ident++ & 0xffff);
    set16(s, 20, 0x4000);
    s[22] = 64; s[23] = 17;
    set16(s, 24, 0);
    set32(s, 26, src);
    set32(s, 30, dst);
    set16(s, 24, checksum(s, 14, 20));
    set16(s, 34, VXLAN_PORT);
    set16(s, 36, VXLAN_PORT);
    set16(s, 38, 8 + len);
    set16(s, 40, 0); // UDP checksum 0: "none" over IPv4 (the kernel's was not visible here)
    b.copy(s, OUTER, off, off + len);
    this.writer.writeFrameAt(s, 0, OUTER + len, this.#sec, this.#nsec);
  }

  close(): void {
    this.writer.close();
  }
}
