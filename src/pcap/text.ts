// The one-line, tcpdump-like rendering of a decoded frame for `tapir pcap dump`
// without --json. Built from the same FrameJson the JSON output prints, so the two
// outputs can never disagree about a field.
import type { FrameJson, LayersJson } from './decode.ts';

const ETHERTYPE_NAMES: Record<number, string> = { 0x0800: 'IPv4', 0x0806: 'ARP', 0x86dd: 'IPv6', 0x8100: '802.1Q' };

// The ICMP and ICMPv6 types a node data plane sees most; others print as numbers.
const ICMP4_NAMES: Record<number, string> = { 0: 'echo reply', 3: 'unreachable', 8: 'echo request', 11: 'time exceeded' };
const ICMP6_NAMES: Record<number, string> = {
  1: 'unreachable', 2: 'packet too big', 3: 'time exceeded', 128: 'echo request', 129: 'echo reply',
  133: 'router solicitation', 134: 'router advertisement', 135: 'neighbor solicitation', 136: 'neighbor advertisement',
  143: 'multicast listener report v2',
};

/** `1 1700000000.123456 IP 10.0.0.1.40000 > 10.0.0.2.80: TCP [SA] seq 1 ack 2, length 74` */
export function formatFrameLine(frame: FrameJson, showLink: boolean): string {
  return `${frame.n} ${frame.time} ${formatLayers(frame, showLink)}, length ${frame.len}`;
}

function hex4(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

function formatLayers(l: LayersJson, showLink: boolean): string {
  const parts: string[] = [];
  if (l.eth && (showLink || (!l.ip && !l.arp))) {
    const type = ETHERTYPE_NAMES[l.eth.type] ?? 'ethertype';
    parts.push(`${l.eth.src} > ${l.eth.dst}${l.eth.vlan === null ? '' : ` vlan ${l.eth.vlan}`} ${type} (${hex4(l.eth.type)})`);
  } else if (l.eth && l.eth.vlan !== null) {
    parts.push(`vlan ${l.eth.vlan}`);
  }
  if (l.arp) {
    const { op, senderIp, targetIp } = l.arp;
    parts.push(op === 1 ? `ARP request who-has ${targetIp} tell ${senderIp}`
      : op === 2 ? `ARP reply ${senderIp} to ${targetIp}`
      : `ARP op ${op} ${senderIp} > ${targetIp}`);
  }
  if (l.ip) {
    const ip = l.ip;
    const family = ip.version === 4 ? 'IP' : 'IP6';
    if (l.tcp) {
      const t = l.tcp;
      parts.push(`${family} ${ip.src}.${t.srcPort} > ${ip.dst}.${t.dstPort}: TCP [${t.flags}] seq ${t.seq}${t.flags.includes('A') ? ` ack ${t.ack}` : ''}`);
    } else if (l.udp) {
      const u = l.udp;
      let s = `${family} ${ip.src}.${u.srcPort} > ${ip.dst}.${u.dstPort}: UDP length ${u.length}`;
      if (l.vxlan) s += ` VXLAN vni ${l.vxlan.vni}`;
      parts.push(s);
    } else if (l.icmp) {
      const names = ip.version === 4 ? ICMP4_NAMES : ICMP6_NAMES;
      const name = names[l.icmp.type];
      parts.push(`${family} ${ip.src} > ${ip.dst}: ${ip.version === 4 ? 'ICMP' : 'ICMP6'} ${name ?? `type ${l.icmp.type}`}${l.icmp.code !== 0 || !name ? ` code ${l.icmp.code}` : ''}`);
    } else {
      parts.push(`${family} ${ip.src} > ${ip.dst}: protocol ${ip.protocol} ttl ${ip.ttl} length ${ip.length}`);
    }
  }
  // An outer frame's checksumOk covers its inner frame, so a bad inner checksum is
  // flagged on both sides of the '|'.
  if (!l.checksumOk) parts.push('[bad checksum]');
  if (l.error !== undefined) parts.push(`[error: ${l.error}]`);
  if (l.inner) parts.push(`| ${formatLayers(l.inner, true)}`);
  return parts.length > 0 ? parts.join(' ') : '(nothing decoded)';
}
