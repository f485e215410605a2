// UDP datagram view (RFC 768).
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, set16 } from './bytes.ts';
import { checksum, udpWireChecksum, verifyChecksum as verifySum } from './checksum.ts';

export const UdpField = {
  SRC_PORT: 0,
  DST_PORT: 2,
  LENGTH: 4,
  CHECKSUM: 6,
} as const;

export const UDP_HEADER_LENGTH = 8;

export class UdpDatagram {
  buf: Uint8Array = EMPTY;
  off = 0;
  // The length field after wrap; 8 after wrapHeader.
  len = 0;
  reason: number = DropReason.OK;

  // check_len: 8 bytes and 8 <= length field <= the bytes the IP layer carried
  // (bytes beyond the length field are ignored, as Linux does). Setting `length`
  // afterwards voids the guarantee.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.wrapHeader(buf, off, len)) return false;
    const length = get16(buf, off + UdpField.LENGTH);
    if (length < UDP_HEADER_LENGTH || length > len) {
      this.reason = DropReason.BAD_UDP_LENGTH;
      return false;
    }
    this.len = length;
    return true;
  }

  // Only the 8-byte header: for a first IP fragment, whose length field describes the
  // whole datagram, and for the quote in an ICMP error. Payload getters are not valid.
  wrapHeader(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = UDP_HEADER_LENGTH;
    if (len < UDP_HEADER_LENGTH || off + len > buf.length) {
      this.reason = DropReason.TRUNCATED_UDP;
      this.len = 0;
      return false;
    }
    this.reason = DropReason.OK;
    return true;
  }

  get srcPort(): number { return get16(this.buf, this.off + UdpField.SRC_PORT); }
  set srcPort(v: number) { set16(this.buf, this.off + UdpField.SRC_PORT, v); }
  get dstPort(): number { return get16(this.buf, this.off + UdpField.DST_PORT); }
  set dstPort(v: number) { set16(this.buf, this.off + UdpField.DST_PORT, v); }
  get length(): number { return get16(this.buf, this.off + UdpField.LENGTH); }
  set length(v: number) { set16(this.buf, this.off + UdpField.LENGTH, v); }
  get checksum(): number { return get16(this.buf, this.off + UdpField.CHECKSUM); }
  set checksum(v: number) { set16(this.buf, this.off + UdpField.CHECKSUM, v); }

  get payloadOffset(): number { return this.off + UDP_HEADER_LENGTH; }
  get payloadLength(): number { return this.len - UDP_HEADER_LENGTH; }

  // Over IPv4 a zero field means "no checksum" and passes (RFC 768). Over IPv6 zero is
  // invalid (RFC 8200 §8.1; the RFC 6935 tunnel exception is not taken here), so
  // pass zeroAllowed = false.
  verifyChecksum(pseudo: number, zeroAllowed: boolean): boolean {
    if (this.checksum === 0) return zeroAllowed;
    return verifySum(this.buf, this.off, this.len, pseudo);
  }

  // A computed 0 goes out as 0xffff (RFC 768), so it is never read as "none".
  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = udpWireChecksum(checksum(this.buf, this.off, this.len, pseudo));
  }
}
