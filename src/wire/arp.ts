// ARP for IPv4 over Ethernet only (RFC 826; RFC 5227 for probes/announcements).
// Other hardware/protocol pairs are not ours to answer, so wrap refuses them.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, get48, set16, set32, set48 } from './bytes.ts';

export const ArpField = {
  HTYPE: 0,
  PTYPE: 2,
  HLEN: 4,
  PLEN: 5,
  OPER: 6,
  SHA: 8,
  SPA: 14,
  THA: 18,
  TPA: 24,
} as const;

export const ARP_LENGTH = 28;
export const ArpOp = { REQUEST: 1, REPLY: 2 } as const;
const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;

export class ArpPacket {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  reason: number = DropReason.OK;

  // check_len plus the fixed Ethernet/IPv4 sizes; trailing Ethernet padding is ignored.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = 0;
    if (len < ARP_LENGTH || off + len > buf.length) {
      this.reason = DropReason.TRUNCATED_ARP;
      return false;
    }
    if (get16(buf, off + ArpField.HTYPE) !== HTYPE_ETHERNET || get16(buf, off + ArpField.PTYPE) !== PTYPE_IPV4
      || buf[off + ArpField.HLEN] !== 6 || buf[off + ArpField.PLEN] !== 4) {
      this.reason = DropReason.UNSUPPORTED_ARP;
      return false;
    }
    this.len = ARP_LENGTH;
    this.reason = DropReason.OK;
    return true;
  }

  get op(): number { return get16(this.buf, this.off + ArpField.OPER); }
  set op(v: number) { set16(this.buf, this.off + ArpField.OPER, v); }
  get senderMac(): number { return get48(this.buf, this.off + ArpField.SHA); }
  set senderMac(v: number) { set48(this.buf, this.off + ArpField.SHA, v); }
  get senderIp(): number { return get32(this.buf, this.off + ArpField.SPA); }
  set senderIp(v: number) { set32(this.buf, this.off + ArpField.SPA, v); }
  get targetMac(): number { return get48(this.buf, this.off + ArpField.THA); }
  set targetMac(v: number) { set48(this.buf, this.off + ArpField.THA, v); }
  get targetIp(): number { return get32(this.buf, this.off + ArpField.TPA); }
  set targetIp(v: number) { set32(this.buf, this.off + ArpField.TPA, v); }

  /**
   * Turns the request at `off` into the reply "`ip` is at `mac`" in place, without a
   * view (RFC 826: the requester's addresses become the target's, the answer goes in
   * the sender fields, op = reply). The caller knows the 28 bytes are there.
   */
  static replyInPlace(b: Uint8Array, off: number, ip: number, mac: number): void {
    set16(b, off + ArpField.OPER, ArpOp.REPLY);
    b.copyWithin(off + ArpField.THA, off + ArpField.SHA, off + ArpField.THA);
    set48(b, off + ArpField.SHA, mac);
    set32(b, off + ArpField.SPA, ip);
  }
}
