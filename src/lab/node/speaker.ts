// The announcing half of the lab's load balancer (MetalLB's L2 mode): for every
// LoadBalancer address, one node adds it to its underlay interface as a /32, so that
// node answers ARP for it and the external client's packets arrive there; kube-proxy
// rules (or the Tapir agent) on that node take it from there. External IPs of Services
// that lie on the underlay are announced the same way (the lab's network routes them to
// a node, which a real network would do with a static route).
//
// Every node daemon runs the same election on the same manifests: the first healthy
// node in topology order, or, for externalTrafficPolicy Local, the first healthy node
// with a ready local endpoint (MetalLB only announces from nodes with one, so traffic
// keeps its source address and still finds a local endpoint). A node is healthy while
// its daemon reports and its data plane answers (MetalLB's speakers leave the election
// when their node is not ready): an address moves off a node whose agent died or hung.
import type { ServiceDescription } from '../../control/describe.ts';
import type { ServiceObject } from '../../k8s/objects.ts';
import { tryIp } from '../../device/ip-command.ts';
import { type Cidr, type Cidr6, ipv6ToString, parseIpv4, parseIpv6 } from '../../wire/address.ts';

export interface SpeakerConfig {
  node: string;
  /** Node names in topology order: the election's tie-break. */
  nodes: string[];
  underlay: Cidr;
  /** Dual-stack labs: the IPv6 underlay (IPv6 load-balancer and external IPs on it are announced as /128s). */
  underlay6?: Cidr6 | undefined;
  interface: string;
  /** The external client's namespace, whose ARP cache is refreshed on a move. */
  clientNetns: string | null;
}

/** Whether the Service has an address a node may announce: a load-balancer ingress or an external IP. */
export function announces(svc: ServiceObject): boolean {
  return (svc.spec.type === 'LoadBalancer' && svc.status.loadBalancerIngress.length > 0) || svc.spec.externalIPs.length > 0;
}

/** Address -> node that announces it; only nodes in `healthy` (default: all) take part. */
export function electAnnouncers(services: ServiceObject[], descriptions: ServiceDescription[], config: Omit<SpeakerConfig, 'node' | 'interface' | 'clientNetns'>, healthy?: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  const candidates = healthy === undefined ? config.nodes : config.nodes.filter((n) => healthy.has(n));
  const first = candidates[0];
  if (first === undefined) return out;
  const byKey = new Map(descriptions.map((d) => [`${d.namespace}/${d.name}`, d]));
  const onUnderlay = (ip: string): boolean => {
    if (ip.includes(':')) {
      const a6 = parseIpv6(ip);
      return a6 !== null && config.underlay6 !== undefined && config.underlay6.contains(a6);
    }
    const address = parseIpv4(ip);
    return address !== undefined && config.underlay.contains(address);
  };
  for (const svc of [...services].sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1))) {
    const description = byKey.get(`${svc.metadata.namespace}/${svc.metadata.name}`);
    let announcer: string | undefined = first;
    if (svc.spec.externalTrafficPolicy === 'Local') {
      const ready = new Set((description?.endpoints ?? []).filter((e) => e.ready).map((e) => e.node));
      announcer = candidates.find((n) => ready.has(n));
    }
    if (announcer === undefined) continue;
    if (svc.spec.type === 'LoadBalancer') {
      for (const ingress of svc.status.loadBalancerIngress) {
        // ipMode Proxy: the load balancer itself forwards to nodes; nobody takes the address.
        if (ingress.ipMode === 'VIP' && onUnderlay(ingress.ip) && !out.has(ingress.ip)) out.set(ingress.ip, announcer);
      }
    }
    for (const ip of svc.spec.externalIPs) if (onUnderlay(ip) && !out.has(ip)) out.set(ip, announcer);
  }
  return out;
}

export class Speaker {
  readonly #config: SpeakerConfig;
  #announced = new Set<string>();

  constructor(config: SpeakerConfig) {
    this.#config = config;
  }

  get announced(): string[] {
    return [...this.#announced].sort();
  }

  /** Makes the node's /32 addresses match the election; returns problems (empty when fine). */
  async reconcile(services: ServiceObject[], descriptions: ServiceDescription[], healthy?: ReadonlySet<string>): Promise<string[]> {
    const problems: string[] = [];
    const announcers = electAnnouncers(services, descriptions, this.#config, healthy);
    const wanted = new Set([...announcers].filter(([, node]) => node === this.#config.node).map(([ip]) => ip));
    const present = await this.#present();
    if (present === undefined) return [`cannot list the addresses of ${this.#config.interface}`];
    // A host address of its family: /32, or /128 without duplicate address detection
    // (the election already made it this node's alone; DAD would hold it tentative).
    const host = (ip: string): string[] => (ip.includes(':') ? [`${ip}/128`, 'nodad'] : [`${ip}/32`]);
    for (const ip of present) {
      if (wanted.has(ip)) continue;
      const r = await tryIp(['addr', 'del', host(ip)[0]!, 'dev', this.#config.interface]);
      if (r.code !== 0) problems.push(`ip addr del ${host(ip)[0]}: ${r.stderr.trim()}`);
    }
    for (const ip of wanted) {
      if (present.has(ip)) continue;
      const [prefix, ...flags] = host(ip);
      const r = await tryIp(['addr', 'add', prefix!, 'dev', this.#config.interface, ...flags]);
      if (r.code !== 0) {
        problems.push(`ip addr add ${prefix}: ${r.stderr.trim()}`);
        continue;
      }
      // No gratuitous ARP tool here: the lab, being the network, drops the client's
      // stale entry so its next packet asks again and reaches the new node.
      if (this.#config.clientNetns !== null) await tryIp(['neigh', 'flush', 'to', ip], { netns: this.#config.clientNetns });
    }
    this.#announced = wanted;
    return problems;
  }

  /** The /32 and /128 addresses on the interface: every one is an announcement (the node's own are a /24 and a /64). */
  async #present(): Promise<Set<string> | undefined> {
    const r = await tryIp(['-j', 'addr', 'show', 'dev', this.#config.interface]);
    if (r.code !== 0) return undefined;
    const links = JSON.parse(r.stdout) as { addr_info?: { family: string; local: string; prefixlen: number }[] }[];
    const host = (a: { family: string; prefixlen: number }): boolean => (a.family === 'inet6' ? a.prefixlen === 128 : a.prefixlen === 32);
    // Canonical text, as the Services write it.
    return new Set(links.flatMap((l) => l.addr_info ?? []).filter(host).map((a) => (a.family === 'inet6' ? ipv6ToString(parseIpv6(a.local)!) : a.local)));
  }
}
