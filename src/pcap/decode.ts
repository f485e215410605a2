// Turns one captured frame into the plain object `tapir pcap dump --json` prints. The
// parsing is src/wire's (decodeFrame into a reused PacketInfo, verifyChecksums); this
// file only picks the fields and renders addresses as text. It allocates per frame
// (objects, strings), which is fine for an offline tool and is why the datapath never
// calls it.
import {
  DropReason, EtherType, IpProtocol, LinkType as WireLinkType, PacketInfo, decodeFrame, dropReasonNames,
  ipv4ToString, ipv6ToString, macToString, verifyChecksums, TcpFlags,
} from '../wire/index.ts';
import { PcapLinkType } from './format.ts';

export interface EthJson { src: string; dst: string; type: number; vlan: number | null }
export interface ArpJson { op: number; senderIp: string; targetIp: string }
export interface IpJson { version: number; src: string; dst: string; protocol: number; ttl: number; length: number }
export interface TcpJson { srcPort: number; dstPort: number; flags: string; seq: number; ack: number }
export interface UdpJson { srcPort: number; dstPort: number; length: number }
export interface IcmpJson { type: number; code: number }

/** The layers of one frame; `inner` is the Ethernet frame a VXLAN header carries. */
export interface LayersJson {
  eth?: EthJson;
  arp?: ArpJson;
  ip?: IpJson;
  tcp?: TcpJson;
  udp?: UdpJson;
  icmp?: IcmpJson;
  vxlan?: { vni: number };
  inner?: LayersJson;
  /** False when any checksum present here (and in `inner`) is wrong. */
  checksumOk: boolean;
  /** Why decoding stopped; the layers before it are still given. */
  error?: string;
}

export interface FrameJson extends LayersJson {
  /** 1-based frame number, as tcpdump and tshark count. */
  n: number;
  /** Seconds since the epoch as a decimal string, with the file's 6 or 9 digits. */
  time: string;
  /** Length on the wire. */
  len: number;
  /** Bytes captured; less than `len` when the snaplen cut the frame. */
  caplen: number;
}

/** The wire decoder's link type for a pcap link type: 228/229 are raw IP of one version. */
export function wireLinkType(pcapLinkType: number): number {
  if (pcapLinkType === PcapLinkType.ETHERNET) return WireLinkType.ETHERNET;
  if (pcapLinkType === PcapLinkType.RAW_IP || pcapLinkType === PcapLinkType.IPV4 || pcapLinkType === PcapLinkType.IPV6) return WireLinkType.RAW_IP;
  return -1;
}

// TCP flag letters in tcpdump's order, with A for ACK where tcpdump prints '.'.
const FLAG_LETTERS: readonly [number, string][] = [
  [TcpFlags.FIN, 'F'], [TcpFlags.SYN, 'S'], [TcpFlags.RST, 'R'], [TcpFlags.PSH, 'P'],
  [TcpFlags.ACK, 'A'], [TcpFlags.URG, 'U'], [TcpFlags.ECE, 'E'], [TcpFlags.CWR, 'C'],
];

export function tcpFlagsString(flags: number): string {
  let s = '';
  for (const [bit, letter] of FLAG_LETTERS) if ((flags & bit) !== 0) s += letter;
  return s;
}

// Outer and inner frames need their own PacketInfo: the inner decode must not
// overwrite the outer fields still to be read.
const outerInfo = new PacketInfo();
const innerInfo = new PacketInfo();

/**
 * Decodes `buf[off, off + caplen)` of a frame whose wire length was `len`. Never
 * throws for bad bytes: what could not be decoded is named in `error`.
 */
export function decodeFrameJson(n: number, time: string, buf: Uint8Array, off: number, caplen: number, len: number, pcapLinkType: number): FrameJson {
  const linkType = wireLinkType(pcapLinkType);
  if (linkType < 0) return { n, time, len, caplen, checksumOk: true, error: `link type ${pcapLinkType} is not decoded` };
  const frame: FrameJson = { n, time, len, caplen, ...decodeLayers(outerInfo, buf, off, caplen, linkType, 0) };
  if (frame.error !== undefined && caplen < len) frame.error += ` (the capture kept ${caplen} of ${len} bytes)`;
  return frame;
}

// One inner frame is decoded (an overlay); VXLAN inside it shows only its vni, which
// bounds the work a crafted frame can ask for.
const MAX_DEPTH = 1;

function decodeLayers(info: PacketInfo, buf: Uint8Array, off: number, length: number, linkType: number, depth: number): LayersJson {
  const reason = decodeFrame(info, buf, off, length, linkType);
  // Keys are set in the order they print: outer layers first, checksumOk and error last.
  const out = {} as LayersJson;
  if (linkType === WireLinkType.ETHERNET && reason !== DropReason.TRUNCATED_ETHERNET) {
    out.eth = { src: macToString(info.ethSrc), dst: macToString(info.ethDst), type: info.ethertype, vlan: info.vlan < 0 ? null : info.vlan };
  }
  if (info.ethertype === EtherType.ARP && info.l3Offset >= 0) {
    out.arp = { op: info.arpOp, senderIp: ipv4ToString(info.arpSenderIp), targetIp: ipv4ToString(info.arpTargetIp) };
  }
  if (info.ipVersion !== 0) {
    const v4 = info.ipVersion === 4;
    out.ip = {
      version: info.ipVersion,
      src: v4 ? ipv4ToString(info.src4) : ipv6ToString(buf, info.src6Offset),
      dst: v4 ? ipv4ToString(info.dst4) : ipv6ToString(buf, info.dst6Offset),
      protocol: info.protocol,
      ttl: info.ttl,
      length: info.ipLength,
    };
  }
  const l4 = info.payloadOffset >= 0;
  if (l4 && info.protocol === IpProtocol.TCP) {
    out.tcp = { srcPort: info.srcPort, dstPort: info.dstPort, flags: tcpFlagsString(info.tcpFlags), seq: info.tcpSeq, ack: info.tcpAck };
  } else if (l4 && info.protocol === IpProtocol.UDP) {
    out.udp = { srcPort: info.srcPort, dstPort: info.dstPort, length: info.l4Length };
  } else if (info.icmpType >= 0) {
    out.icmp = { type: info.icmpType, code: info.icmpCode };
  }
  let checksumOk = verifyChecksums(info, buf);
  if (info.vni >= 0) {
    out.vxlan = { vni: info.vni };
    if (depth < MAX_DEPTH) {
      // Read everything needed from `info` above: innerInfo is the next level's.
      const inner = decodeLayers(innerInfo, buf, info.innerOffset, info.innerLength, WireLinkType.ETHERNET, depth + 1);
      out.inner = inner;
      checksumOk &&= inner.checksumOk;
    }
  }
  out.checksumOk = checksumOk;
  if (reason !== DropReason.OK) out.error = dropReasonNames[reason] ?? `drop reason ${reason}`;
  return out;
}
