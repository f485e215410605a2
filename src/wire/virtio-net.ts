// struct virtio_net_hdr (linux/virtio_net.h; virtio 1.x §5.1.6): the 10-byte header a
// TUN/TAP opened with IFF_VNET_HDR puts in front of every frame, or 12 bytes with
// num_buffers (virtio_net_hdr_mrg_rxbuf, TUNSETVNETHDRSZ 12). Fields are little-endian.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16le, set16le } from './bytes.ts';

export const VirtioNetField = {
  FLAGS: 0,
  GSO_TYPE: 1,
  HDR_LEN: 2,
  GSO_SIZE: 4,
  CSUM_START: 6,
  CSUM_OFFSET: 8,
  NUM_BUFFERS: 10,
} as const;

/** sizeof(struct virtio_net_hdr): the header every port of the datapath uses. */
export const VIRTIO_NET_HEADER_LENGTH = 10;
/** sizeof(struct virtio_net_hdr_mrg_rxbuf): with num_buffers (TUNSETVNETHDRSZ 12). */
export const VIRTIO_NET_HEADER_MRG_RXBUF_LENGTH = 12;

export const VirtioNetFlags = {
  // CHECKSUM_PARTIAL: the L4 checksum at csum_start + csum_offset holds the pseudo-
  // header sum; whoever transmits sums csum_start..end and stores the complement.
  NEEDS_CSUM: 1,
  // The checksum was verified (receive side).
  DATA_VALID: 2,
  RSC_INFO: 4,
} as const;

export const VirtioNetGso = {
  NONE: 0,
  TCPV4: 1,
  UDP: 3,
  TCPV6: 4,
  UDP_L4: 5,
  // Flag bits (Linux 6.17+, TUN_F_UDP_TUNNEL_GSO): the TCP super-frame rides inside a
  // UDP tunnel over IPv4 or IPv6, and the kernel segments outer and inner headers both.
  UDP_TUNNEL_IPV4: 0x20,
  UDP_TUNNEL_IPV6: 0x40,
  // Flag bit: the TCP segments carry ECN CWR handling (TSO with ECN).
  ECN: 0x80,
} as const;

/**
 * struct virtio_net_hdr_v1_hash_tunnel (Linux 6.17+): the 12-byte v1 header, the 8 bytes
 * of the hash report (unused here, zero), then where the outer transport header and the
 * inner network header start, both from the start of the frame (little-endian). A TAP
 * set to this size (TUNSETVNETHDRSZ 24) takes a UDP-tunnel super-frame (gso_type
 * TCPV4|UDP_TUNNEL_IPV4, csum_start at the inner TCP header) and segments it itself.
 */
export const VIRTIO_NET_TUNNEL_HEADER_LENGTH = 24;
export const VirtioNetTunnelField = { OUTER_TH_OFFSET: 20, INNER_NH_OFFSET: 22 } as const;

export class VirtioNetHeader {
  buf: Uint8Array = EMPTY;
  off = 0;
  // 10, or 12 when the device was set up with num_buffers; fixed at construction, as
  // the device's header size is negotiated once.
  readonly headerLength: number;
  reason: number = DropReason.OK;

  constructor(withNumBuffers = false) {
    this.headerLength = withNumBuffers ? VIRTIO_NET_HEADER_MRG_RXBUF_LENGTH : VIRTIO_NET_HEADER_LENGTH;
  }

  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    if (len < this.headerLength || off + len > buf.length) {
      this.reason = DropReason.TRUNCATED_VIRTIO_NET_HEADER;
      return false;
    }
    this.reason = DropReason.OK;
    return true;
  }

  get flags(): number { return VirtioNetHeader.flags(this.buf, this.off); }
  set flags(v: number) { VirtioNetHeader.setFlags(this.buf, this.off, v); }
  get needsCsum(): boolean { return VirtioNetHeader.needsCsum(this.buf, this.off); }
  get dataValid(): boolean { return (this.flags & VirtioNetFlags.DATA_VALID) !== 0; }
  get gsoType(): number { return VirtioNetHeader.gsoType(this.buf, this.off); }
  set gsoType(v: number) { VirtioNetHeader.setGsoType(this.buf, this.off, v); }
  // The GSO protocol without the ECN bit.
  get gsoProtocol(): number { return VirtioNetHeader.gsoProtocol(this.buf, this.off); }
  get gsoEcn(): boolean { return (this.gsoType & VirtioNetGso.ECN) !== 0; }
  get hdrLen(): number { return VirtioNetHeader.hdrLen(this.buf, this.off); }
  set hdrLen(v: number) { VirtioNetHeader.setHdrLen(this.buf, this.off, v); }
  get gsoSize(): number { return VirtioNetHeader.gsoSize(this.buf, this.off); }
  set gsoSize(v: number) { VirtioNetHeader.setGsoSize(this.buf, this.off, v); }
  get csumStart(): number { return VirtioNetHeader.csumStart(this.buf, this.off); }
  set csumStart(v: number) { VirtioNetHeader.setCsumStart(this.buf, this.off, v); }
  get csumOffset(): number { return VirtioNetHeader.csumOffset(this.buf, this.off); }
  set csumOffset(v: number) { VirtioNetHeader.setCsumOffset(this.buf, this.off, v); }
  // 1 when the header has no num_buffers field (the value a device would assume).
  get numBuffers(): number { return this.headerLength === VIRTIO_NET_HEADER_MRG_RXBUF_LENGTH ? get16le(this.buf, this.off + VirtioNetField.NUM_BUFFERS) : 1; }
  set numBuffers(v: number) { if (this.headerLength === VIRTIO_NET_HEADER_MRG_RXBUF_LENGTH) set16le(this.buf, this.off + VirtioNetField.NUM_BUFFERS, v); }

  // The frame follows the header.
  get frameOffset(): number { return this.off + this.headerLength; }

  // All zero: no offload requested (VIRTIO_NET_HDR_GSO_NONE, no flags).
  clear(): void {
    for (let i = 0; i < this.headerLength; i++) this.buf[this.off + i] = 0;
  }

  // The same fields without a view, for the per-packet path: `off` is where the header
  // starts and the caller knows it is there (every datapath port has the 10-byte
  // header). Plain byte reads and writes: nothing is allocated.
  static flags(b: Uint8Array, off: number): number { return b[off + VirtioNetField.FLAGS]!; }
  static setFlags(b: Uint8Array, off: number, v: number): void { b[off + VirtioNetField.FLAGS] = v; }
  static needsCsum(b: Uint8Array, off: number): boolean { return (b[off + VirtioNetField.FLAGS]! & VirtioNetFlags.NEEDS_CSUM) !== 0; }
  static gsoType(b: Uint8Array, off: number): number { return b[off + VirtioNetField.GSO_TYPE]!; }
  static setGsoType(b: Uint8Array, off: number, v: number): void { b[off + VirtioNetField.GSO_TYPE] = v; }
  static gsoProtocol(b: Uint8Array, off: number): number { return b[off + VirtioNetField.GSO_TYPE]! & ~VirtioNetGso.ECN; }
  static hdrLen(b: Uint8Array, off: number): number { return get16le(b, off + VirtioNetField.HDR_LEN); }
  static setHdrLen(b: Uint8Array, off: number, v: number): void { set16le(b, off + VirtioNetField.HDR_LEN, v); }
  static gsoSize(b: Uint8Array, off: number): number { return get16le(b, off + VirtioNetField.GSO_SIZE); }
  static setGsoSize(b: Uint8Array, off: number, v: number): void { set16le(b, off + VirtioNetField.GSO_SIZE, v); }
  static csumStart(b: Uint8Array, off: number): number { return get16le(b, off + VirtioNetField.CSUM_START); }
  static setCsumStart(b: Uint8Array, off: number, v: number): void { set16le(b, off + VirtioNetField.CSUM_START, v); }
  static csumOffset(b: Uint8Array, off: number): number { return get16le(b, off + VirtioNetField.CSUM_OFFSET); }
  static setCsumOffset(b: Uint8Array, off: number, v: number): void { set16le(b, off + VirtioNetField.CSUM_OFFSET, v); }

  /** A zeroed 10-byte header at `off`: no offload requested. */
  static clear(b: Uint8Array, off: number): void {
    // Plain stores: for ten bytes, Buffer#fill's argument handling costs more than the work.
    for (let i = 0; i < VIRTIO_NET_HEADER_LENGTH; i++) b[off + i] = 0;
  }

  /**
   * Moves the 10-byte header at `from` to `to` when the link header in front of the
   * packet changes by `shift` bytes (Ethernet stripped: -14; prepended: +14):
   * csum_start and hdr_len count from the start of the frame, so they move with it.
   */
  static move(b: Uint8Array, from: number, to: number, shift: number): void {
    b.copyWithin(to, from, from + VIRTIO_NET_HEADER_LENGTH);
    if (VirtioNetHeader.needsCsum(b, to)) VirtioNetHeader.setCsumStart(b, to, VirtioNetHeader.csumStart(b, to) + shift);
    if (VirtioNetHeader.gsoType(b, to) !== VirtioNetGso.NONE) VirtioNetHeader.setHdrLen(b, to, VirtioNetHeader.hdrLen(b, to) + shift);
  }
}
