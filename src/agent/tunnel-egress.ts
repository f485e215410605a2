// The node's egress TAP for UDP tunnel segmentation offload (src/datapath/tunnel-offload.ts).
//
// The agent writes whole VXLAN super-frames (outer Ethernet, IPv4 from the node's
// underlay address, UDP 4789, VXLAN, then the pod's TSO frame) into a TAP of its own in
// the node's namespace, each behind a 24-byte virtio_net_hdr_v1_hash_tunnel. The kernel
// takes them in as routed packets to the other node and segments them on the way out,
// outer and inner headers both. It needs, once at start:
// - Linux 6.17+: the TAP accepts TUN_F_UDP_TUNNEL_GSO (older kernels refuse the bit);
// - IPv4 forwarding on in the node's namespace (a Kubernetes node has it);
// - the TAP taking packets from the node's own address (accept_local; reverse-path
//   filtering off on it, and not strict for the whole namespace).
// Where any is missing the agent says why, once, and segments in software as before.
import { readFileSync, writeFileSync } from 'node:fs';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UDP_TUNNEL_GSO } from '../device/tun.ts';
import { ip as runIp } from '../device/ip-command.ts';
import { TunnelEgress } from '../datapath/tunnel-offload.ts';
import { parseMac, VIRTIO_NET_TUNNEL_HEADER_LENGTH } from '../wire/index.ts';
import type { AgentConfig } from './config.ts';

/** The egress TAP's name in the node's namespace. */
export const EGRESS_TAP = 'tapir-egress';

export interface OpenedEgress {
  egress: TunnelEgress;
  device: TunDevice;
}

/** The egress TAP set up, or null with the reason logged (software segmentation then). */
export async function openTunnelEgress(config: AgentConfig, log: (m: string) => void): Promise<OpenedEgress | null> {
  const off = (why: string): null => {
    log(`tunnel offload: off (${why}); TSO frames for other nodes are segmented in software`);
    return null;
  };
  if (!config.tunnelOffload) return off('tunnelOffload: false');
  if (config.underlayFamily !== 4) return off('an IPv6 underlay: not built for it yet');
  if (sysctl('net/ipv4/ip_forward') !== '1') return off('IPv4 forwarding is off in the node\'s namespace');
  if (sysctl('net/ipv4/conf/all/rp_filter') === '1') return off('strict reverse-path filtering (net.ipv4.conf.all.rp_filter = 1)');
  let device: TunDevice;
  try {
    device = TunDevice.open({
      name: EGRESS_TAP, mode: 'tap', vnetHdr: true, vnetHdrSize: VIRTIO_NET_TUNNEL_HEADER_LENGTH, persist: false,
      offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO,
    });
  } catch (err) {
    return off(`${EGRESS_TAP}: ${(err as Error).message}`);
  }
  if ((device.offloads & TUN_F_UDP_TUNNEL_GSO) === 0) {
    device.close();
    return off('this kernel lacks TUN_F_UDP_TUNNEL_GSO (Linux 6.17+)');
  }
  const mac = parseMac(device.mac);
  try {
    // Its own address as a source (accept_local), no reverse-path check on it, no IPv6
    // (no router solicitations or DAD into a device nobody reads).
    const conf = `net/ipv4/conf/${device.name}`;
    setSysctl(`${conf}/accept_local`, '1');
    setSysctl(`${conf}/rp_filter`, '0');
    try { setSysctl(`net/ipv6/conf/${device.name}/disable_ipv6`, '1'); } catch { /* no IPv6 in this kernel */ }
    await runIp(['link', 'set', 'dev', device.name, 'up']);
    if (sysctl(`${conf}/forwarding`) !== '1') throw new Error(`${conf}/forwarding is 0`);
    if (mac === undefined) throw new Error(`its MAC ${device.mac} does not parse`);
  } catch (err) {
    device.close();
    return off(`${EGRESS_TAP}: ${(err as Error).message}`);
  }
  log(`tunnel offload: on (TSO frames for other nodes go whole to ${device.name}; the kernel segments them)`);
  return { egress: new TunnelEgress(device, mac), device };
}

function sysctl(path: string): string {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
  } catch {
    return '';
  }
}

function setSysctl(path: string, value: string): void {
  writeFileSync(`/proc/sys/${path}`, value);
}
