// The lab's "physical" network: one namespace per node and for the client, joined by a
// Linux bridge that lives in the lab's own underlay namespace (never the root
// namespace). veths are created from inside the underlay namespace with the peer placed
// directly in the node namespace, so no device ever appears in the root namespace.
import { ipBatch, enableForwarding } from './shell.ts';
import { POD_IFNAME, UNDERLAY_IFNAME } from './names.ts';
import type { LabState } from '../state.ts';
import { parseIpv6 } from '../../wire/address.ts';

/** Creates every namespace of the lab (pods too: the lab is the container runtime). */
export async function createNamespaces(state: LabState): Promise<void> {
  const all = allNetns(state);
  await ipBatch(null, all.map((n) => `netns add ${n}`));
}

export function allNetns(state: LabState): string[] {
  return [
    state.underlay.netns,
    ...state.nodes.map((n) => n.netns),
    ...(state.client === null ? [] : [state.client.netns]),
    ...state.pods.map((p) => p.netns),
  ];
}

export async function buildUnderlay(state: LabState): Promise<void> {
  const { mtu } = state.addressing;
  const prefixLength = state.addressing.underlayCIDR.split('/')[1];
  const bridge = state.underlay.bridge;
  // The switch: STP off (the default) so ports forward at once instead of after 2 x 15 s.
  const lines = ['link set lo up', `link add ${bridge} mtu ${mtu} type bridge`, `link set ${bridge} up`];
  const hosts = [
    ...state.nodes.map((n) => ({ port: n.underlayPort, netns: n.netns })),
    ...(state.client === null ? [] : [{ port: state.client.underlayPort, netns: state.client.netns }]),
  ];
  for (const host of hosts) {
    lines.push(`link add ${host.port} mtu ${mtu} type veth peer name ${UNDERLAY_IFNAME} mtu ${mtu} netns ${host.netns}`);
    lines.push(`link set ${host.port} master ${bridge} up`);
  }
  await ipBatch(state.underlay.netns, lines);

  const hostSetups = state.nodes.map((n) => ({ netns: n.netns, ip: n.underlayIP, ip6: n.underlayIP6, forward: true }));
  if (state.client !== null) hostSetups.push({ netns: state.client.netns, ip: state.client.ip, ip6: state.client.ip6, forward: false });
  const prefixLength6 = state.addressing.underlayCIDRv6?.split('/')[1];
  await Promise.all(hostSetups.map(async (h) => {
    // Dual-stack: the IPv6 underlay address too, without duplicate address detection
    // (the lab plans every address; DAD would only hold it back for a second).
    const v6 = h.ip6 === undefined ? [] : [`addr add ${h.ip6}/${prefixLength6} dev ${UNDERLAY_IFNAME} nodad`];
    await ipBatch(h.netns, ['link set lo up', `addr add ${h.ip}/${prefixLength} dev ${UNDERLAY_IFNAME}`, ...v6, `link set ${UNDERLAY_IFNAME} up`]);
    // Nodes route between pods, the host stack and the overlay; the client is a plain host.
    if (h.forward) await enableForwarding(h.netns);
  }));
  for (const node of state.nodes) node.devices.push(UNDERLAY_IFNAME);
}

/** Loopback up in every pod namespace (the only device a fresh namespace has). */
export async function preparePodNamespaces(state: LabState): Promise<void> {
  await Promise.all(state.pods.map((p) => ipBatch(p.netns, ['link set lo up'])));
}

/** Addresses eth0 inside a pod namespace, as a CNI plugin would (kernel dataplane). */
export function podInterfaceLines(ip: string, mac: string, prefixLength: number, gateway: string, mtu: number): string[] {
  return [
    'link set lo up',
    `link set ${POD_IFNAME} address ${mac} mtu ${mtu}`,
    `addr add ${ip}/${prefixLength} dev ${POD_IFNAME}`,
    `link set ${POD_IFNAME} up`,
    `route add default via ${gateway} dev ${POD_IFNAME}`,
  ];
}

/** An IPv6-only pod's MAC: 0a:5a + the address's last four bytes, as the Tapir agent's (macForIpv6). */
export function podMac6(ip6: string): string {
  const bytes = parseIpv6(ip6)!;
  return ['0a', '5a', ...[...bytes.subarray(12)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** 0a:58 + the IPv4 bytes: the MAC convention of the CNI bridge plugin and the Tapir agent. */
export function podMac(ip: string): string {
  return ['0a', '58', ...ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}
