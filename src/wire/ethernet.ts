// Ethernet II frame view with one IEEE 802.1Q tag recognised (smoltcp wire::ethernet,
// plus the tag). No FCS: TAP devices and pcap captures deliver frames without it, and
// frames may be shorter than the 60-byte minimum before padding.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get48, set16, set48 } from './bytes.ts';

export const EthernetField = {
  DST: 0,
  SRC: 6,
  ETHERTYPE: 12,
  // With an 802.1Q tag: TPID 0x8100 sits where the ethertype was, then the TCI
  // (PCP:3, DEI:1, VID:12), then the real ethertype.
  VLAN_TCI: 14,
  VLAN_ETHERTYPE: 16,
} as const;

export const ETHERNET_HEADER_LENGTH = 14;
export const VLAN_TAG_LENGTH = 4;

export const EtherType = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100,
  IPV6: 0x86dd,
} as const;

export const MAC_BROADCAST = 0xffff_ffff_ffff;

export class EthernetFrame {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  // Offset of the ethertype that names the payload: 12, or 16 behind a VLAN tag.
  private typeAt = 0;
  // DropReason of the last failed wrap, 0 after a successful one.
  reason: number = DropReason.OK;

  // check_len: the 14-byte header, and the 4-byte tag when the TPID says 802.1Q. After
  // this, every getter and setter stays inside [off, off + len).
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    if (len < ETHERNET_HEADER_LENGTH || off + len > buf.length) return this.fail(DropReason.TRUNCATED_ETHERNET);
    if (get16(buf, off + EthernetField.ETHERTYPE) === EtherType.VLAN) {
      if (len < ETHERNET_HEADER_LENGTH + VLAN_TAG_LENGTH) return this.fail(DropReason.TRUNCATED_ETHERNET);
      this.typeAt = EthernetField.VLAN_ETHERTYPE;
    } else {
      this.typeAt = EthernetField.ETHERTYPE;
    }
    this.reason = DropReason.OK;
    return true;
  }

  private fail(reason: number): boolean {
    this.reason = reason;
    this.len = 0;
    return false;
  }

  get dst(): number { return get48(this.buf, this.off + EthernetField.DST); }
  set dst(mac: number) { set48(this.buf, this.off + EthernetField.DST, mac); }
  get src(): number { return get48(this.buf, this.off + EthernetField.SRC); }
  set src(mac: number) { set48(this.buf, this.off + EthernetField.SRC, mac); }

  // I/G bit of the first octet (IEEE 802 §8.2): multicast, broadcast included.
  get dstIsMulticast(): boolean { return (this.buf[this.off]! & 1) !== 0; }
  get dstIsBroadcast(): boolean { return this.dst === MAC_BROADCAST; }

  get hasVlan(): boolean { return this.typeAt === EthernetField.VLAN_ETHERTYPE; }
  // VLAN ID (12 bits), or -1 without a tag.
  get vlanId(): number { return this.hasVlan ? get16(this.buf, this.off + EthernetField.VLAN_TCI) & 0x0fff : -1; }
  get vlanPcp(): number { return this.hasVlan ? this.buf[this.off + EthernetField.VLAN_TCI]! >>> 5 : 0; }

  // The ethertype of the payload (after the tag, if any).
  get ethertype(): number { return get16(this.buf, this.off + this.typeAt); }
  set ethertype(t: number) { set16(this.buf, this.off + this.typeAt, t); }

  get headerLength(): number { return this.typeAt + 2; }
  get payloadOffset(): number { return this.off + this.typeAt + 2; }
  get payloadLength(): number { return this.len - this.typeAt - 2; }

  // The same fields of an untagged header at `off`, without a view, for the per-packet
  // path (the datapath refuses tagged frames and writes only untagged ones).
  static setDst(b: Uint8Array, off: number, mac: number): void { set48(b, off + EthernetField.DST, mac); }
  static setSrc(b: Uint8Array, off: number, mac: number): void { set48(b, off + EthernetField.SRC, mac); }
  static ethertype(b: Uint8Array, off: number): number { return get16(b, off + EthernetField.ETHERTYPE); }
  static setEthertype(b: Uint8Array, off: number, t: number): void { set16(b, off + EthernetField.ETHERTYPE, t); }
}
