// The host TUN in the node's namespace (`hostTun` in the config, default tapir0): the
// node's own way into the datapath. The agent opens it and routes the pod network and
// the service range into it, IPv6 too on a node with IPv6 pods (docs/agent-config.md,
// "IPv6"), so the node reaches pods and cluster IPs through the agent, with its own
// address as the source. A failure here stops the agent's start (AgentStartError).
import { ip as runIp } from '../device/ip-command.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../device/tun.ts';
import { ipv4ToString, VIRTIO_NET_HEADER_LENGTH } from '../wire/index.ts';
import { ipv6ToString } from '../wire/address.ts';
import type { AgentConfig } from './config.ts';

/** Opens the host TUN (not yet up: routeHostTun). */
export function openHostTun(config: AgentConfig): TunDevice {
  // The host TUN: TSO and partial checksums from the node's stack pass through to
  // pods untouched; only the underlay path segments in software.
  // Persistent, as the pods' TAPs are: while a restart is under way the node's routes
  // to pods and cluster IPs stay, and its packets wait for a retransmission instead of
  // failing with "network unreachable".
  return TunDevice.open({ name: config.hostTun, mode: 'tun', vnetHdr: true, vnetHdrSize: VIRTIO_NET_HEADER_LENGTH, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, persist: true });
}

/** Sets the host TUN up with the config's MTU and routes the pod network and the service range into it. */
export async function routeHostTun(config: AgentConfig, tun: string): Promise<void> {
  // One `ip -batch` (one process, a restart's gap is made of such costs):
  // the whole pod network (local and remote pods) is reached through the agent, the
  // node's underlay address as the source, so pods see the node as itself; cluster
  // IPs are virtual, and the node reaches them through the agent too.
  const src = ipv4ToString(config.underlayAddress);
  await ip(['-batch', '-'], {
    input: [
      `link set dev ${tun} mtu ${config.mtu} up`,
      `route replace ${config.clusterCIDR} dev ${tun} src ${src}`,
      `route replace ${config.serviceCIDR} dev ${tun} src ${src}`,
      ...hostTunIpv6(config, tun),
    ].join('\n') + '\n',
  });
}

/** Setting up the host TUN in the node's namespace failed: the agent does not start. */
export class AgentStartError extends TapirError {
  readonly code = 'TAPIR_AGENT_START';
}

async function ip(args: string[], opts: { input?: string } = {}): Promise<void> {
  try {
    await runIp(args, opts);
  } catch (err) {
    throw new AgentStartError((err as Error).message, { cause: err });
  }
}

/**
 * The host TUN's IPv6 lines (none without podCIDRv6). The node's IPv6 pod gateway
 * (podCIDRv6 ::1) goes on the TUN as a /128 without DAD (it must be usable as a source
 * at once; only the agent is behind the TUN), and the cluster's IPv6 pod range (and the
 * IPv6 service range, when configured) is routed into the TUN from it: the overlay runs
 * over IPv4, and a node's IPv6 traffic to another node's pods passes that node's source
 * check only from inside its own pod range, which the gateway address is. With
 * `underlayAddressV6`, this node's own pods are reached from that address instead (a
 * more specific route): they see the node as itself, as IPv4 pods see its underlay
 * address, and their answers reach the node's stack through the TUN.
 */
export function hostTunIpv6(config: AgentConfig, tun: string): string[] {
  if (config.podCIDRv6 === null || config.clusterCIDRv6 === null) return [];
  const gateway = ipv6ToString(config.podCIDRv6.host(1));
  const lines = [
    `addr replace ${gateway}/128 dev ${tun} nodad`,
    `route replace ${config.clusterCIDRv6} dev ${tun} src ${gateway}`,
  ];
  if (config.underlayAddressV6 !== null) lines.push(`route replace ${config.podCIDRv6} dev ${tun} src ${ipv6ToString(config.underlayAddressV6)}`);
  if (config.serviceCIDRv6 !== null) lines.push(`route replace ${config.serviceCIDRv6} dev ${tun} src ${gateway}`);
  return lines;
}
