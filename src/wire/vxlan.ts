// VXLAN header view (RFC 7348 §5): flags(8) reserved(24) VNI(24) reserved(8), carried
// in UDP to port 4789, followed by the inner Ethernet frame.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get32, set32 } from './bytes.ts';
import { ETHERNET_HEADER_LENGTH } from './ethernet.ts';
import { IPV4_HEADER_LENGTH } from './ipv4.ts';
import { UDP_HEADER_LENGTH } from './udp.ts';

export const VxlanField = {
  FLAGS: 0,
  VNI: 4,
} as const;

export const VXLAN_HEADER_LENGTH = 8;
export const VXLAN_PORT = 4789;
// RFC 7348 §5: the I flag says the VNI is valid; the other flag bits are reserved.
export const VXLAN_FLAG_I = 0x08;
// Outer Ethernet + IPv4 + UDP + VXLAN in front of the inner frame: the headroom a
// slab leaves for in-place encapsulation (docs/ARCHITECTURE.md, "the slab").
export const VXLAN_OVERHEAD_V4 = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + UDP_HEADER_LENGTH + VXLAN_HEADER_LENGTH;

export class VxlanHeader {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  reason: number = DropReason.OK;

  // check_len: 8 bytes, and the I flag set. Reserved bits are ignored on receipt
  // (RFC 7348 §5), so only the I flag is checked.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = 0;
    if (len < VXLAN_HEADER_LENGTH || off + len > buf.length) {
      this.reason = DropReason.TRUNCATED_VXLAN;
      return false;
    }
    if ((buf[off + VxlanField.FLAGS]! & VXLAN_FLAG_I) === 0) {
      this.reason = DropReason.BAD_VXLAN_FLAGS;
      return false;
    }
    this.len = len;
    this.reason = DropReason.OK;
    return true;
  }

  get flags(): number { return this.buf[this.off + VxlanField.FLAGS]!; }
  get vni(): number { return get32(this.buf, this.off + VxlanField.VNI) >>> 8; }
  // Writes the VNI and the low reserved byte (zero).
  set vni(v: number) { set32(this.buf, this.off + VxlanField.VNI, (v << 8) >>> 0); }

  get innerOffset(): number { return this.off + VXLAN_HEADER_LENGTH; }
  get innerLength(): number { return this.len - VXLAN_HEADER_LENGTH; }

  // Without a view, for the per-packet path (the caller has checked the 8 bytes).
  static flags(b: Uint8Array, off: number): number { return b[off + VxlanField.FLAGS]!; }
  static vni(b: Uint8Array, off: number): number { return get32(b, off + VxlanField.VNI) >>> 8; }

  // Write a whole header at `off` (encapsulation); no wrap needed first.
  static emit(buf: Uint8Array, off: number, vni: number): void {
    set32(buf, off, VXLAN_FLAG_I << 24);
    set32(buf, off + VxlanField.VNI, (vni << 8) >>> 0);
  }
}
