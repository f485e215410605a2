// The baseline dataplane, all in the kernel, modelled on flannel's vxlan backend:
// per node a bridge cni0 holding the pod gateway, a veth per pod, and vxlan0 with
// podCIDR .0/32. For each remote node: a route to its pod CIDR via its .0 (onlink), a
// permanent neighbour entry .0 -> its VTEP MAC and an FDB entry VTEP MAC -> its underlay
// IP. No learning, no multicast: the lab knows every node, like flannel's subnet lease.
//
// Dual-stack (flannel's IPv6 in the same VXLAN device, over the IPv4 underlay): cni0
// also holds podCIDRv6 ::1, vxlan0 podCIDRv6 ::0/128, each remote /64 is routed via the
// remote range's ::0 (onlink), with a permanent neighbour entry ::0 -> its VTEP MAC (the
// FDB entry is the IPv4 one: one VTEP per node). The node forwards IPv6, a sysctl of its
// own namespace. Every IPv6 address is added `nodad`: the lab plans them all, and DAD
// would hold each one back for a second. Pods route ::/0 via the gateway (static, like
// the tapir dataplane's; no router advertisements). An IPv6-only lab's pods get only
// the IPv6 side (cni0 and vxlan0 keep their IPv4 addresses, unused by pods).
import { tryRunIn } from '../../device/ip-command.ts';
import { bridgeBatch, ipBatch } from './shell.ts';
import { POD_BRIDGE, POD_IFNAME, UNDERLAY_IFNAME, VXLAN_DEVICE } from './names.ts';
import { isIpv6Underlay, type LabState, type NodeState, type PodState } from '../state.ts';
import { podInterfaceLines, podMac, podMac6 } from './underlay.ts';
import { LabError } from '../validate.ts';

/** RFC 7348 §5: IANA-assigned VXLAN UDP port. */
const VXLAN_PORT = 4789;

export async function buildKernelDataplane(state: LabState, progress: (message: string) => void): Promise<void> {
  progress(`kernel dataplane: bridge ${POD_BRIDGE}, ${VXLAN_DEVICE} (VNI ${state.addressing.vni}) and veths on ${state.nodes.length} nodes`);
  await Promise.all(state.nodes.map((node) => buildNode(state, node)));
}

/**
 * A pod's veth on the node bridge. Hairpin on: a pod reaching itself through a Service
 * is DNATed back to the port it came in on, which a bridge otherwise never sends to
 * (what kubenet and the CNI bridge plugin's hairpinMode do).
 */
export function podPortLines(hostDevice: string, podNetns: string, mtu: number): string[] {
  return [
    `link add ${hostDevice} mtu ${mtu} type veth peer name eth0 netns ${podNetns}`,
    `link set ${hostDevice} master ${POD_BRIDGE} up`,
    `link set ${hostDevice} type bridge_slave hairpin on`,
  ];
}

/**
 * A pod's eth0 under the kernel dataplane, with its MAC set on `pod`: its IPv4 address
 * and route (podInterfaceLines) and, in a dual-stack lab, the IPv6 ones; an IPv6-only
 * pod's IPv6 ones alone, with the MAC the agent would give it (0a:5a:…).
 */
export function kernelPodLines(node: NodeState, pod: PodState, podMTU: number): string[] {
  if (pod.ip === null) {
    pod.mac = podMac6(pod.ip6!);
    return ['link set lo up', `link set ${POD_IFNAME} address ${pod.mac} mtu ${podMTU}`, `link set ${POD_IFNAME} up`, ...podInterfaceLines6(node, pod)];
  }
  pod.mac = podMac(pod.ip);
  return [...podInterfaceLines(pod.ip, pod.mac, Number(node.podCIDR.split('/')[1]), node.gateway, podMTU), ...podInterfaceLines6(node, pod)];
}

/** A dual-stack or IPv6-only pod's IPv6 address and default route on its eth0 (none in an IPv4 lab). */
export function podInterfaceLines6(node: NodeState, pod: PodState): string[] {
  if (node.podCIDRv6 === undefined || pod.ip6 == null) return [];
  return [
    `addr add ${pod.ip6}/${node.podCIDRv6.split('/')[1]} dev ${POD_IFNAME} nodad`,
    `route add ::/0 via ${node.gateway6} dev ${POD_IFNAME}`,
  ];
}

/** The node's IPv6 side: the gateway on cni0, ::0 on vxlan0, a route and neighbour entry per remote node. */
function nodeLines6(state: LabState, node: NodeState): string[] {
  if (node.podCIDRv6 === undefined) return [];
  const [network, prefixLength] = node.podCIDRv6.split('/') as [string, string];
  const lines = [
    `addr add ${node.gateway6}/${prefixLength} dev ${POD_BRIDGE} nodad`,
    `addr add ${network}/128 dev ${VXLAN_DEVICE} nodad`,
  ];
  for (const remote of state.nodes) {
    if (remote === node || remote.podCIDRv6 === undefined) continue;
    const remoteNetwork = remote.podCIDRv6.split('/')[0]!;
    lines.push(`route add ${remote.podCIDRv6} via ${remoteNetwork} dev ${VXLAN_DEVICE} onlink`);
    lines.push(`neigh add ${remoteNetwork} lladdr ${remote.vtepMac} dev ${VXLAN_DEVICE} nud permanent`);
  }
  return lines;
}

/** IPv6 forwarding in the node's namespace (its own sysctl: the root namespace's is never touched). */
async function enableIpv6Forwarding(netns: string): Promise<void> {
  const r = await tryRunIn(netns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv6/conf/all/forwarding']);
  if (r.code !== 0) throw new LabError('COMMAND_FAILED', `enabling IPv6 forwarding in ${netns} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

async function buildNode(state: LabState, node: NodeState): Promise<void> {
  const { podMTU, vni } = state.addressing;
  const six = isIpv6Underlay(state);
  const prefixLength = Number(node.podCIDR.split('/')[1]);
  const network = node.podCIDR.split('/')[0]!;
  const lines = [
    `link add ${POD_BRIDGE} type bridge`,
    `link set ${POD_BRIDGE} mtu ${podMTU}`,
    `addr add ${node.gateway}/${prefixLength} dev ${POD_BRIDGE}`,
    `link set ${POD_BRIDGE} up`,
    // Over an IPv6 underlay the VXLAN device's local and remote ends are the nodes' IPv6 addresses.
    `link add ${VXLAN_DEVICE} type vxlan id ${vni} dstport ${VXLAN_PORT} local ${six ? node.underlayIP6! : node.underlayIP} dev ${UNDERLAY_IFNAME} nolearning`,
    `link set ${VXLAN_DEVICE} address ${node.vtepMac} mtu ${podMTU}`,
    `addr add ${network}/32 dev ${VXLAN_DEVICE}`,
    `link set ${VXLAN_DEVICE} up`,
    // The node's own connections to cluster IPs need a route to leave by before the nat
    // OUTPUT hook rewrites them (a real node has its default route; the lab's have none).
    `route add ${state.addressing.serviceCIDR} dev ${UNDERLAY_IFNAME}`,
  ];
  const fdb: string[] = [];
  for (const remote of state.nodes) {
    if (remote === node) continue;
    const remoteNetwork = remote.podCIDR.split('/')[0]!;
    lines.push(`route add ${remote.podCIDR} via ${remoteNetwork} dev ${VXLAN_DEVICE} onlink`);
    lines.push(`neigh add ${remoteNetwork} lladdr ${remote.vtepMac} dev ${VXLAN_DEVICE} nud permanent`);
    fdb.push(`fdb append ${remote.vtepMac} dev ${VXLAN_DEVICE} dst ${six ? remote.underlayIP6! : remote.underlayIP} self permanent`);
  }
  lines.push(...nodeLines6(state, node));
  const pods = state.pods.filter((p) => p.node === node.name);
  for (const pod of pods) lines.push(...podPortLines(pod.hostDevice!, pod.netns, podMTU));
  if (node.podCIDRv6 !== undefined) await enableIpv6Forwarding(node.netns);
  await ipBatch(node.netns, lines);
  node.devices.push(POD_BRIDGE, VXLAN_DEVICE, ...pods.map((p) => p.hostDevice!));
  await bridgeBatch(node.netns, fdb);
  await Promise.all(pods.map((pod) => ipBatch(pod.netns, kernelPodLines(node, pod, podMTU))));
}
