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

export const VIRTIO_NET_HDR_LENGTH = 10;
export const VIRTIO_NET_HDR_MRG_RXBUF_LENGTH = 12;

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
  // Flag bit: the TCP segments carry ECN CWR handling (TSO with ECN).
  ECN: 0x80,
} as const;

export class VirtioNetHeader {
  buf: Uint8Array = EMPTY;
  off = 0;
  // 10, or 12 when the device was set up with num_buffers; fixed at construction, as
  // the device's header size is negotiated once.
  readonly headerLength: number;
  reason: number = DropReason.OK;

  constructor(withNumBuffers = false) {
    this.headerLength = withNumBuffers ? VIRTIO_NET_HDR_MRG_RXBUF_LENGTH : VIRTIO_NET_HDR_LENGTH;
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

  get flags(): number { return this.buf[this.off + VirtioNetField.FLAGS]!; }
  set flags(v: number) { this.buf[this.off + VirtioNetField.FLAGS] = v; }
  get needsCsum(): boolean { return (this.flags & VirtioNetFlags.NEEDS_CSUM) !== 0; }
  get dataValid(): boolean { return (this.flags & VirtioNetFlags.DATA_VALID) !== 0; }
  get gsoType(): number { return this.buf[this.off + VirtioNetField.GSO_TYPE]!; }
  set gsoType(v: number) { this.buf[this.off + VirtioNetField.GSO_TYPE] = v; }
  // The GSO protocol without the ECN bit.
  get gsoProtocol(): number { return this.gsoType & ~VirtioNetGso.ECN; }
  get gsoEcn(): boolean { return (this.gsoType & VirtioNetGso.ECN) !== 0; }
  get hdrLen(): number { return get16le(this.buf, this.off + VirtioNetField.HDR_LEN); }
  set hdrLen(v: number) { set16le(this.buf, this.off + VirtioNetField.HDR_LEN, v); }
  get gsoSize(): number { return get16le(this.buf, this.off + VirtioNetField.GSO_SIZE); }
  set gsoSize(v: number) { set16le(this.buf, this.off + VirtioNetField.GSO_SIZE, v); }
  get csumStart(): number { return get16le(this.buf, this.off + VirtioNetField.CSUM_START); }
  set csumStart(v: number) { set16le(this.buf, this.off + VirtioNetField.CSUM_START, v); }
  get csumOffset(): number { return get16le(this.buf, this.off + VirtioNetField.CSUM_OFFSET); }
  set csumOffset(v: number) { set16le(this.buf, this.off + VirtioNetField.CSUM_OFFSET, v); }
  // 1 when the header has no num_buffers field (the value a device would assume).
  get numBuffers(): number { return this.headerLength === VIRTIO_NET_HDR_MRG_RXBUF_LENGTH ? get16le(this.buf, this.off + VirtioNetField.NUM_BUFFERS) : 1; }
  set numBuffers(v: number) { if (this.headerLength === VIRTIO_NET_HDR_MRG_RXBUF_LENGTH) set16le(this.buf, this.off + VirtioNetField.NUM_BUFFERS, v); }

  // The frame follows the header.
  get frameOffset(): number { return this.off + this.headerLength; }

  // All zero: no offload requested (VIRTIO_NET_HDR_GSO_NONE, no flags).
  clear(): void {
    for (let i = 0; i < this.headerLength; i++) this.buf[this.off + i] = 0;
  }
}
