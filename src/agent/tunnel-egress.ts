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
// One thing it cannot read up front is the node's firewall: a FORWARD filter that drops
// (a policy of drop, as Docker sets one) would blackhole every bulk flow to other nodes.
// So it watches the first super-frames through: the packets the kernel forwarded and
// sent must grow with them (ForwardingCheck), else the offload is turned off at run time.
import { readFileSync, writeFileSync } from 'node:fs';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UDP_TUNNEL_GSO } from '../device/tun.ts';
import { ip as runIp } from '../device/ip-command.ts';
import { TunnelEgress } from '../datapath/tunnel-offload.ts';
import { parseMac, VIRTIO_NET_TUNNEL_HEADER_LENGTH } from '../wire/index.ts';
import type { Datapath } from '../datapath/datapath.ts';
import type { AgentConfig } from './config.ts';

/** The egress TAP's name in the node's namespace. */
export const EGRESS_TAP = 'tapir-egress';

/** The offload in use: the egress TAP, the datapath writing to it, the check on the kernel forwarding. */
export interface TunnelOffload {
  /** Back to software segmentation; the TAP closed (it goes with its fd). */
  close(): void;
}

/** How often the forwarding check looks, until it has a verdict. */
const CHECK_INTERVAL_MS = 1000;

/**
 * Turns the offload on for `datapath` where the node can take it, or says why not and
 * returns null (software segmentation then). While on, the kernel's forwarding of the
 * first super-frames is checked (ForwardingCheck); if it drops them, the offload is
 * turned off again and the log says so.
 */
export async function startTunnelOffload(config: AgentConfig, datapath: Datapath, log: (m: string) => void): Promise<TunnelOffload | null> {
  const device = await openEgressTap(config, log);
  if (device === null) return null;
  datapath.tunnelEgress = new TunnelEgress(device, parseMac(device.mac)!);
  let timer: NodeJS.Timeout | null = null;
  const close = (): void => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    if (datapath.tunnelEgress !== null) datapath.tunnelEgress = null;
    device.close();
  };
  if (forwardedAndSent() >= 0) {
    const check = new ForwardingCheck(() => datapath.superFrames.sent, forwardedAndSent);
    timer = setInterval(() => {
      const v = check.verdict();
      if (v.state === 'waiting') return;
      clearInterval(timer!);
      timer = null;
      if (v.state === 'working') return;
      close();
      log(`tunnel offload: off: the kernel forwarded and sent ${v.forwarded} packets while ${v.sent} super-frames went to ${device.name} (a FORWARD filter or a route drops them?); TSO frames for other nodes are segmented in software from now on`);
    }, CHECK_INTERVAL_MS);
    timer.unref();
  }
  return { close };
}

/** The egress TAP set up, or null with the reason logged. */
async function openEgressTap(config: AgentConfig, log: (m: string) => void): Promise<TunDevice | null> {
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
  try {
    // Its own address as a source (accept_local), no reverse-path check on it, no IPv6
    // (no router solicitations or DAD into a device nobody reads).
    const conf = `net/ipv4/conf/${device.name}`;
    setSysctl(`${conf}/accept_local`, '1');
    setSysctl(`${conf}/rp_filter`, '0');
    try { setSysctl(`net/ipv6/conf/${device.name}/disable_ipv6`, '1'); } catch { /* no IPv6 in this kernel */ }
    await runIp(['link', 'set', 'dev', device.name, 'up']);
    if (sysctl(`${conf}/forwarding`) !== '1') throw new Error(`${conf}/forwarding is 0`);
    if (parseMac(device.mac) === undefined) throw new Error(`its MAC ${device.mac} does not parse`);
  } catch (err) {
    device.close();
    return off(`${EGRESS_TAP}: ${(err as Error).message}`);
  }
  log(`tunnel offload: on (TSO frames for other nodes go whole to ${device.name}; the kernel segments them)`);
  return device;
}

/** How many super-frames the first verdict waits for. */
const CHECK_AFTER = 4;

/**
 * Whether the kernel forwards the super-frames it is handed, from two running counts: the
 * super-frames the agent wrote and the packets the namespace forwarded and sent
 * (forwardedAndSent, of any origin). Once CHECK_AFTER super-frames went out, forwarded growing at
 * least as much means working; less than half as much, broken (a filter or a route drops
 * them); in between it waits for more. (Other forwarded traffic can only hide a loss,
 * never invent one: a busy forwarding node may pass the check with a partial loss.)
 */
export class ForwardingCheck {
  readonly #sent: () => number;
  readonly #forwarded: () => number;
  readonly #sent0: number;
  readonly #forwarded0: number;

  constructor(sent: () => number, forwarded: () => number) {
    this.#sent = sent;
    this.#forwarded = forwarded;
    this.#sent0 = sent();
    this.#forwarded0 = forwarded();
  }

  verdict(): { state: 'waiting' | 'working' | 'broken'; sent: number; forwarded: number } {
    const sent = this.#sent() - this.#sent0;
    const forwarded = this.#forwarded() - this.#forwarded0;
    if (sent < CHECK_AFTER) return { state: 'waiting', sent, forwarded };
    if (forwarded >= sent) return { state: 'working', sent, forwarded };
    return { state: forwarded < sent / 2 ? 'broken' : 'waiting', sent, forwarded };
  }
}

/**
 * Packets this namespace forwarded and sent on (/proc/net/snmp, Linux 6.3+): IP
 * OutTransmits (every packet handed to a device) less OutRequests (the namespace's own).
 * Not ForwDatagrams: the kernel counts that before the FORWARD hook, so it grows with
 * packets a filter then drops. -1 when unreadable.
 */
export function forwardedAndSent(): number {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Ip: '));
    const names = lines[0]!.split(' ');
    const values = lines[1]!.split(' ');
    const transmits = names.indexOf('OutTransmits');
    if (transmits < 0) return -1;
    return Number(values[transmits]) - Number(values[names.indexOf('OutRequests')]);
  } catch {
    return -1;
  }
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
