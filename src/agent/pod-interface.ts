// What the agent sets up inside a pod's namespace on its interface, and the address
// helpers the port manager shares with it. The interface gets its MAC, the MTU, its
// addresses and a default route per family via the node's gateway, all static.
//
// IPv6 (dual-stack and IPv6-only pods): the address goes on with `nodad` and the
// interface's DAD is off (the agent answers neighbour solicitations for the gateway and
// the pods, so duplicate detection could only add a second of `tentative`); the default
// route `::/0 via gateway6` is static, so accepting router advertisements is turned off
// in the pod (net.ipv6.conf.IFNAME.accept_ra=0, inside its namespace only), which also
// stops its router solicitations. `addrgenmode eui64` is set explicitly: the datapath's
// anti-spoofing lets a pod send from exactly its global address and the EUI-64
// link-local of its MAC (RFC 4291 §2.5.1). A dual-stack pod keeps its IPv4 MAC
// (macForIpv4); an IPv6-only pod gets macForIpv6(ip6).
//
// The gateway's neighbour entry is written too (one gateway MAC per node, the IPv4
// gateway's, for both families): while the agent restarts nobody answers ARP or
// neighbour solicitations, and an entry gone FAILED would fail the pod's new
// connections with "no route to host".
import { ip, ipBatch, tryRun } from '../device/ip-command.ts';
import { ipv4, ipv4ToString, ipv6ToString, macToString, parseIpv6 } from '../wire/address.ts';
import { macForIpv4, macForIpv6 } from '../datapath/forwarding.ts';
import { ControlError, ControlErrorCode } from './protocol.ts';

export interface AddPortParams {
  containerId: string;
  ifName: string;
  netns: string;
  /** 0 (with prefixLength and gateway 0) for no IPv4 address. */
  ip: number;
  prefixLength: number;
  gateway: number;
  /** null (with prefixLength6 0, gateway6 null) for no IPv6 address. */
  ip6?: Uint8Array | null;
  prefixLength6?: number;
  gateway6?: Uint8Array | null;
  podName?: string;
  podNamespace?: string;
  network?: string;
}

export function sameIp6(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (a === null || a === undefined || b === null || b === undefined) return (a ?? null) === (b ?? null);
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether the first `len` bits of two IPv6 addresses are the same. */
export function samePrefix6(a: Uint8Array, b: Uint8Array, len: number): boolean {
  for (let bit = 0; bit < len; bit += 8) {
    const mask = len - bit >= 8 ? 0xff : (0xff << (8 - (len - bit))) & 0xff;
    if ((a[bit >> 3]! & mask) !== (b[bit >> 3]! & mask)) return false;
  }
  return true;
}

/** The pod's addresses as text, for messages: "10.244.1.5", "fd00::5" or "10.244.1.5 fd00::5". */
export function podAddresses(p: { ip: number; ip6?: Uint8Array | null }): string {
  return [p.ip !== 0 ? ipv4ToString(p.ip) : '', p.ip6 ? ipv6ToString(p.ip6) : ''].filter((x) => x !== '').join(' ');
}

/** The MAC a pod with these addresses gets (see the top of the file). */
export function macForPod(ip: number, ip6: Uint8Array | null | undefined): number {
  return ip === 0 && ip6 ? macForIpv6(ip6) : macForIpv4(ip);
}

export async function nsIp(netns: string, args: string[]): Promise<string> {
  try {
    return await ip(args, { netns, timeoutMs: 10_000 });
  } catch (err) {
    throw new ControlError(ControlErrorCode.deviceError, (err as Error).message);
  }
}

/** The link's kind and MAC inside the namespace, or null if it has no such link. */
export async function linkIn(netns: string, ifName: string): Promise<{ kind: string; mac: string } | null> {
  try {
    const out = await ip(['-j', '-d', 'link', 'show', 'dev', ifName], { netns, timeoutMs: 10_000 });
    const link = (JSON.parse(out) as { address?: string; linkinfo?: { info_kind?: string } }[])[0];
    return link === undefined ? null : { kind: link.linkinfo?.info_kind ?? '', mac: link.address ?? '' };
  } catch {
    return null;
  }
}

/**
 * Configures the pod's interface, just moved into its namespace (still down): for an
 * IPv6 pod the sysctls first, then one `ip -batch` in the pod.
 */
export async function configurePodInterface(p: AddPortParams, mac: number, mtu: number, gatewayMacValue: number): Promise<void> {
  const gatewayMac = macToString(gatewayMacValue);
  const lines: string[] = [];
  if (p.ip6) {
    // Before the link comes up: an interface up with accept_ra sends router
    // solicitations, and with accept_dad its link-local starts tentative.
    await podSysctl(p.netns, p.ifName, { accept_ra: 0, accept_dad: 0 });
    lines.push(`link set dev ${p.ifName} addrgenmode eui64`);
  }
  // MAC before up: the IPv6 link-local address is derived from it when the link comes up.
  lines.push(`link set dev ${p.ifName} address ${macToString(mac)} mtu ${mtu} up`);
  if (p.ip !== 0) {
    const gw = ipv4ToString(p.gateway);
    lines.push(
      `addr replace ${ipv4ToString(p.ip)}/${p.prefixLength} dev ${p.ifName}`,
      `route replace default via ${gw} dev ${p.ifName}`,
      `neigh replace ${gw} lladdr ${gatewayMac} dev ${p.ifName} nud permanent`,
    );
  }
  if (p.ip6 && p.gateway6) {
    const gw6 = ipv6ToString(p.gateway6);
    lines.push(
      `addr replace ${ipv6ToString(p.ip6)}/${p.prefixLength6} dev ${p.ifName} nodad`,
      // The gateway is inside the pod's prefix (the port manager checks), so the route needs no onlink.
      `route replace ::/0 via ${gw6} dev ${p.ifName}`,
      `neigh replace ${gw6} lladdr ${gatewayMac} dev ${p.ifName} nud permanent`,
    );
  }
  try {
    await ipBatch(lines, { netns: p.netns, timeoutMs: 10_000 });
  } catch (err) {
    throw new ControlError(ControlErrorCode.deviceError, (err as Error).message);
  }
}

export function ip6Of(text: string): Uint8Array {
  const b = parseIpv6(text);
  if (b === null) throw new ControlError(ControlErrorCode.invalidField, `'${text}' is not an IPv6 address`);
  return b;
}

/**
 * A request's (or a state record's) addresses as numbers and bytes; an absent or empty
 * family is 0 / null. The protocol has checked the text; a hand-edited state file is
 * checked here (the port is then dropped with the reason).
 */
export function addParams(r: {
  containerId: string; ifName: string; netns: string; ip?: string; prefixLength?: number; gateway?: string;
  ip6?: string; prefixLength6?: number; gateway6?: string; podName?: string; podNamespace?: string; network?: string;
}): AddPortParams {
  const v4 = r.ip !== undefined && r.ip !== '';
  const v6 = r.ip6 !== undefined && r.ip6 !== '';
  return {
    containerId: r.containerId, ifName: r.ifName, netns: r.netns,
    ip: v4 ? ipv4(r.ip!) : 0, prefixLength: v4 ? r.prefixLength ?? 32 : 0, gateway: v4 ? ipv4(r.gateway ?? '') : 0,
    ip6: v6 ? ip6Of(r.ip6!) : null, prefixLength6: v6 ? r.prefixLength6 ?? 128 : 0, gateway6: v6 ? ip6Of(r.gateway6 ?? '') : null,
    podName: r.podName ?? '', podNamespace: r.podNamespace ?? '', network: r.network ?? '',
  };
}

/**
 * Writes IPv6 sysctls of the pod's interface inside its namespace (/proc/sys/net is the
 * namespace of the process that opens it, so sysctl runs there through nsenter). The
 * slash form of the key keeps an interface name with a dot (eth0.5) one path element.
 */
async function podSysctl(netns: string, ifName: string, values: Record<string, number>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `net/ipv6/conf/${ifName}/${k}=${v}`);
  const r = await tryRun('nsenter', [`--net=${netns}`, 'sysctl', '-q', '-w', ...args], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new ControlError(ControlErrorCode.deviceError, `sysctl ${args.join(' ')} in ${netns}: ${r.stderr.trim()}`);
}
