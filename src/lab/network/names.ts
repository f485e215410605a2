// Every name the lab creates derives from the lab name. Namespaces are
// `tl-<lab>-<role>`, with the role's own parts joined by "." (DNS-1123 labels never
// contain dots), so the names of lab "a" can never be mistaken for lab "a-b"'s and
// `down` can find leftovers by pattern after a crash. Devices live inside the lab's
// namespaces, so their names (at most 15 bytes, IFNAMSIZ) need no lab name at all.
import { readdirSync } from 'node:fs';

export const NETNS_DIR = '/run/netns';

export function underlayNetns(lab: string): string { return `tl-${lab}-underlay`; }
export function nodeNetns(lab: string, node: string): string { return `tl-${lab}-node.${node}`; }
export function podNetns(lab: string, namespace: string, pod: string): string { return `tl-${lab}-pod.${namespace}.${pod}`; }
export function clientNetns(lab: string, client: string): string { return `tl-${lab}-client.${client}`; }

/** The bridge inside the underlay namespace that joins nodes and client (the "switch"). */
export const UNDERLAY_BRIDGE = 'br0';
/** The underlay interface in node and client namespaces. */
export const UNDERLAY_IFNAME = 'eth0';
export const POD_IFNAME = 'eth0';
/** Kernel dataplane devices in each node namespace (the names flannel's vxlan backend uses, shortened). */
export const POD_BRIDGE = 'cni0';
export const VXLAN_DEVICE = 'vxlan0';

export function underlayPortOfNode(index: number): string { return `node${index}`; }
export const CLIENT_UNDERLAY_PORT = 'client0';
export function podVeth(indexOnNode: number): string { return `veth${indexOnNode}`; }

const ESCAPE = /[.*+?^${}()|[\]\\]/g;

/** Matches exactly the namespace names lab `lab` can create. */
export function labNetnsPattern(lab: string): RegExp {
  const part = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
  return new RegExp(`^tl-${lab.replace(ESCAPE, '\\$&')}-(underlay|node\\.${part}|pod\\.${part}\\.${part}|client\\.${part})$`);
}

/** Named namespaces (`ip netns add`) of lab `lab` that exist right now. */
export function existingLabNetns(lab: string): string[] {
  const pattern = labNetnsPattern(lab);
  try {
    return readdirSync(NETNS_DIR).filter((name) => pattern.test(name));
  } catch {
    return [];
  }
}
