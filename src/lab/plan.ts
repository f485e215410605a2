// From a validated topology to the complete lab plan: every namespace, device and
// address decided before anything is created, so a bad address plan fails up front
// with the topology field that caused it, and `state.json` describes the whole lab
// from the first write.
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import * as names from './network/names.ts';
import { formatPool, parsePool, type AddressPool } from './cluster/load-balancer.ts';
import { manifestDirOf } from './cluster/manifests.ts';
import { isIpv6Underlay, STATE_VERSION, stateDirOf, type LabState, type NodeState, type PodState } from './state.ts';
import {
  defaultProxyMode, proxyModeProblem, topologyError, VXLAN6_OVERHEAD, VXLAN_OVERHEAD, type Dataplane, type IpFamily, type ProxyMode, type Topology, type UnderlayFamily,
} from './topology.ts';
import { type Cidr, type Cidr6, ipv4ToString, ipv6ToString, parseCidr, parseCidr6, parseIpv4 } from '../wire/address.ts';

/** Node i's underlay address defaults to network + 10 + i, the client's to network + 100. */
const NODE_HOST_OFFSET = 10;
const CLIENT_HOST_OFFSET = 100;
/** Pod CIDR .0 goes to vxlan0 (flannel's convention), .1 is the gateway; pods start at .2. */
const FIRST_POD_HOST = 2;

export function planLab(topology: Topology, lab: string, dataplane: Dataplane, proxyModeOverride?: ProxyMode, ipFamilyOverride?: IpFamily, underlayFamily: UnderlayFamily = 'ipv4'): LabState {
  const errors: string[] = [];
  const ipFamily = ipFamilyOverride ?? topology.ipFamily ?? 'ipv4';
  // IPv6-only labs (kind's ipFamily: ipv6) plan the nodes as dual-stack ones do (IPv6
  // underlay addresses for node ports and load-balancer addresses, a /64 each of
  // clusterCIDRv6; the overlay stays on the IPv4 underlay unless --underlay ipv6); only
  // the pods and Services differ: IPv6 addresses only, and the API server's service range IPv6 only.
  const dual = ipFamily === 'dual' || ipFamily === 'ipv6';
  const ipv6Only = ipFamily === 'ipv6';
  if (underlayFamily === 'ipv6' && !dual) errors.push(`--underlay: ipv6 needs IPv6 in the lab (--ip-family dual or ipv6): the nodes' IPv6 underlay addresses carry the overlay`);
  const proxyMode = proxyModeOverride ?? topology.proxyMode ?? defaultProxyMode(dataplane);
  const modeProblem = proxyModeProblem(dataplane, proxyMode);
  if (modeProblem !== undefined) errors.push(`${proxyModeOverride === undefined ? 'proxyMode' : '--proxy-mode'}: ${modeProblem}`);
  const field = (path: string, message: string): void => { errors.push(`${path}: ${message}`); };
  const prefixField = (path: string, text: string): Cidr | undefined => {
    const prefix = parseCidr(text, true);
    if (prefix === undefined) field(path, `"${text}" must be an IPv4 network like 10.244.0.0/16 (host bits zero)`);
    return prefix;
  };
  const underlay = prefixField('addressing.underlayCIDR', topology.addressing.underlayCIDR);
  const cluster = prefixField('addressing.clusterCIDR', topology.addressing.clusterCIDR);
  const service = prefixField('addressing.serviceCIDR', topology.addressing.serviceCIDR);
  if (underlay !== undefined && underlay.prefixLength > 29) field('addressing.underlayCIDR', 'must be /29 or larger');
  if (cluster !== undefined && cluster.prefixLength > 24) field('addressing.clusterCIDR', 'must be /24 or larger (each node takes a /24 by default)');
  const pairs: [string, Cidr | undefined, string, Cidr | undefined][] = [
    ['addressing.clusterCIDR', cluster, 'addressing.underlayCIDR', underlay],
    ['addressing.serviceCIDR', service, 'addressing.underlayCIDR', underlay],
    ['addressing.serviceCIDR', service, 'addressing.clusterCIDR', cluster],
  ];
  for (const [pathA, a, pathB, b] of pairs) {
    if (a !== undefined && b !== undefined && a.overlaps(b)) field(pathA, `overlaps ${pathB}`);
  }
  const prefix6Field = (path: string, text: string): Cidr6 | undefined => {
    const prefix = parseCidr6(text, true);
    if (prefix === undefined) field(path, `"${text}" must be an IPv6 network like fd00:10:244::/56 (host bits zero)`);
    return prefix;
  };
  const underlay6 = dual ? prefix6Field('addressing.underlayCIDRv6', topology.addressing.underlayCIDRv6) : undefined;
  const cluster6 = dual ? prefix6Field('addressing.clusterCIDRv6', topology.addressing.clusterCIDRv6) : undefined;
  const service6 = dual ? prefix6Field('addressing.serviceCIDRv6', topology.addressing.serviceCIDRv6) : undefined;
  if (underlay6 !== undefined && underlay6.prefixLength > 120) field('addressing.underlayCIDRv6', 'must be /120 or larger');
  if (cluster6 !== undefined && cluster6.prefixLength > 64) field('addressing.clusterCIDRv6', 'must be /64 or larger (each node takes a /64 by default)');
  if (service6 !== undefined && service6.prefixLength < 108) field('addressing.serviceCIDRv6', 'must be /108 or smaller (kube-apiserver allows at most 20 host bits for IPv6 service ranges)');
  const pairs6: [string, Cidr6 | undefined, string, Cidr6 | undefined][] = [
    ['addressing.clusterCIDRv6', cluster6, 'addressing.underlayCIDRv6', underlay6],
    ['addressing.serviceCIDRv6', service6, 'addressing.underlayCIDRv6', underlay6],
    ['addressing.serviceCIDRv6', service6, 'addressing.clusterCIDRv6', cluster6],
  ];
  for (const [pathA, a, pathB, b] of pairs6) {
    if (a !== undefined && b !== undefined && a.overlaps(b)) field(pathA, `overlaps ${pathB}`);
  }
  if (errors.length > 0) throw planError(topology, errors);

  const pool = topology.addressing.loadBalancerPool === '' ? defaultPool(underlay!) : parsePool(topology.addressing.loadBalancerPool);
  if (pool === undefined) field('addressing.loadBalancerPool', `"${topology.addressing.loadBalancerPool}" must be FIRST-LAST (172.30.0.200-172.30.0.250) or a CIDR`);
  else if (!underlay!.contains(pool.first) || !underlay!.contains(pool.last)) {
    // The node answers ARP for these on the underlay: they must be on its link.
    field('addressing.loadBalancerPool', `${formatPool(pool)} is not inside addressing.underlayCIDR ${underlay!.toString()}`);
  }
  if (errors.length > 0) throw planError(topology, errors);

  const stateDir = stateDirOf(lab);
  // VXLAN over an IPv6 underlay takes 20 bytes more of the underlay's MTU.
  const podMTU = topology.mtu - (underlayFamily === 'ipv6' ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD);
  const usedUnderlay = new Map<number, string>();
  const underlayAddress = (path: string, text: string | undefined, offset: number): string => {
    const address = text === undefined ? (underlay!.network + offset) >>> 0 : parseIpv4(text);
    const last = underlay!.network + underlay!.size - 1;
    if (address === undefined) field(path, `"${text}" is not an IPv4 address`);
    else if (!underlay!.contains(address) || address === underlay!.network || address === last) {
      field(path, `${ipv4ToString(address)} is not a host address of addressing.underlayCIDR ${underlay!.toString()}`);
    } else if (usedUnderlay.has(address)) field(path, `${ipv4ToString(address)} is already used by ${usedUnderlay.get(address)}`);
    else usedUnderlay.set(address, path);
    return address === undefined ? '' : ipv4ToString(address);
  };

  const nodes: NodeState[] = [];
  const pods: PodState[] = [];
  const podCIDRs: [string, Cidr][] = [];
  const podCIDRs6: [string, Cidr6][] = [];
  /** Dual-stack and IPv6-only: the node's IPv6 range (default its /64 of clusterCIDRv6), checked like podCIDR. */
  const podCIDRv6Of = (path: string, text: string | undefined, index: number): Cidr6 | undefined => {
    const c = text === undefined ? cluster6!.subnet(64, index) : prefix6Field(`${path}.podCIDRv6`, text);
    if (c === undefined) {
      if (text === undefined) field(path, `addressing.clusterCIDRv6 ${cluster6!.toString()} has no /64 number ${index} for this node; set podCIDRv6`);
      return undefined;
    }
    if (!cluster6!.covers(c)) field(`${path}.podCIDRv6`, `${c.toString()} is not inside addressing.clusterCIDRv6 ${cluster6!.toString()}`);
    if (c.prefixLength > 120) field(`${path}.podCIDRv6`, 'must be /120 or larger');
    for (const [otherPath, other] of podCIDRs6) if (c.overlaps(other)) field(`${path}.podCIDRv6`, `${c.toString()} overlaps ${otherPath}.podCIDRv6`);
    podCIDRs6.push([path, c]);
    return c;
  };
  topology.nodes.forEach((spec, i) => {
    const index = i + 1;
    const path = `nodes[${i}]`;
    const podCIDR = spec.podCIDR === undefined ? cluster!.subnet(24, index) : prefixField(`${path}.podCIDR`, spec.podCIDR);
    if (podCIDR === undefined) {
      if (spec.podCIDR === undefined) field(`${path}`, `addressing.clusterCIDR ${cluster!.toString()} has no /24 number ${index} for this node; set podCIDR`);
      return;
    }
    if (!cluster!.covers(podCIDR)) field(`${path}.podCIDR`, `${podCIDR.toString()} is not inside addressing.clusterCIDR ${cluster!.toString()}`);
    if (podCIDR.prefixLength > 28) field(`${path}.podCIDR`, 'must be /28 or larger');
    for (const [otherPath, other] of podCIDRs) {
      if (podCIDR.overlaps(other)) field(`${path}.podCIDR`, `${podCIDR.toString()} overlaps ${otherPath}.podCIDR`);
    }
    podCIDRs.push([path, podCIDR]);
    // Usable pod addresses: all but .0 (vxlan0), .1 (gateway) and the broadcast address.
    const capacity = podCIDR.size - 3;
    if (spec.pods.length > capacity) field(`${path}.pods`, `${spec.pods.length} pods do not fit in podCIDR ${podCIDR.toString()} (at most ${capacity})`);
    const podCIDR6 = dual ? podCIDRv6Of(path, spec.podCIDRv6, index) : undefined;
    const node: NodeState = {
      name: spec.name,
      zone: spec.zone,
      index,
      netns: names.nodeNetns(lab, spec.name),
      underlayIP: underlayAddress(`${path}.underlayIP`, spec.underlayIP, NODE_HOST_OFFSET + index),
      underlayPort: names.underlayPortOfNode(index),
      podCIDR: podCIDR.toString(),
      gateway: ipv4ToString(podCIDR.network + 1),
      ...(podCIDR6 === undefined ? {} : {
        underlayIP6: ipv6ToString(underlay6!.host(NODE_HOST_OFFSET + index)),
        podCIDRv6: podCIDR6.toString(),
        gateway6: ipv6ToString(podCIDR6.host(1)),
      }),
      vtepMac: vtepMac(index),
      devices: [],
      agent: dataplane === 'tapir' ? agentPaths(stateDir, spec.name) : null,
      daemon: daemonPaths(stateDir, spec.name),
    };
    nodes.push(node);
    spec.pods.forEach((podSpec, j) => {
      const key = `${podSpec.namespace}.${podSpec.name}`;
      pods.push({
        name: podSpec.name,
        namespace: podSpec.namespace,
        node: spec.name,
        netns: names.podNetns(lab, podSpec.namespace, podSpec.name),
        ip: dataplane === 'kernel' && !ipv6Only ? ipv4ToString(podCIDR.network + FIRST_POD_HOST + j) : null,
        // The kernel dataplane plans the IPv6 address like the IPv4 one (::2 + j); tapir-cni assigns it otherwise.
        ...(podCIDR6 === undefined ? {} : { ip6: dataplane === 'kernel' ? ipv6ToString(podCIDR6.host(FIRST_POD_HOST + j)) : null }),
        mac: null,
        labels: podSpec.labels,
        ports: podSpec.ports,
        workload: podSpec.workload,
        hostDevice: dataplane === 'kernel' ? names.podVeth(j) : null,
        containerId: createHash('sha256').update(`tapir-lab/${lab}/${podSpec.namespace}/${podSpec.name}`).digest('hex'),
        cniAdded: false,
        workloadPid: null,
        log: join(stateDir, 'pods', `${key}.log`),
        readyFile: join(stateDir, 'pods', `${key}.ready`),
        dns: { policy: podSpec.dnsPolicy, config: podSpec.dnsConfig, hostNetwork: false, resolvConf: [], warnings: [] },
        enableServiceLinks: podSpec.enableServiceLinks,
        ...(podSpec.hostname === '' ? {} : { hostname: podSpec.hostname }),
        ...(podSpec.subdomain === '' ? {} : { subdomain: podSpec.subdomain }),
      });
    });
  });
  const client = topology.client === null ? null : {
    name: topology.client.name,
    netns: names.clientNetns(lab, topology.client.name),
    ip: underlayAddress('client.underlayIP', topology.client.underlayIP, CLIENT_HOST_OFFSET),
    underlayPort: names.CLIENT_UNDERLAY_PORT,
    ...(dual ? { ip6: ipv6ToString(underlay6!.host(CLIENT_HOST_OFFSET)) } : {}),
  };
  if (pool !== undefined) {
    for (const [address, owner] of usedUnderlay) {
      if (address >= pool.first && address <= pool.last) field('addressing.loadBalancerPool', `${formatPool(pool)} includes ${ipv4ToString(address)} of ${owner}`);
    }
  }
  if (errors.length > 0) throw planError(topology, errors);
  return {
    version: STATE_VERSION,
    name: lab,
    dataplane,
    proxyMode,
    manifests: manifestDirOf(stateDir),
    terminationGracePeriodSeconds: topology.terminationGracePeriodSeconds,
    phase: 'building',
    createdAt: new Date().toISOString(),
    source: topology.source,
    stateDir,
    addressing: dual
      ? {
        ...topology.addressing, loadBalancerPool: formatPool(pool!), vni: topology.vni, mtu: topology.mtu, podMTU,
        loadBalancerPoolV6: pool6Of(underlay!, underlay6!, pool!),
      }
      : {
        underlayCIDR: topology.addressing.underlayCIDR, clusterCIDR: topology.addressing.clusterCIDR, serviceCIDR: topology.addressing.serviceCIDR,
        loadBalancerPool: formatPool(pool!), vni: topology.vni, mtu: topology.mtu, podMTU,
      },
    ipFamily: ipv6Only ? 'ipv6' : dual ? 'dual' : 'ipv4',
    ...(underlayFamily === 'ipv6' ? { underlayFamily } : {}),
    underlay: { netns: names.underlayNetns(lab), bridge: names.UNDERLAY_BRIDGE },
    nodes,
    pods,
    client,
    agent: { ...topology.agent },
  };
}

/** The IPv6 pool of a dual-stack or IPv6-only lab: the IPv4 pool's host numbers in the IPv6 underlay (::c8-::fa by default). */
function pool6Of(underlay: Cidr, underlay6: Cidr6, pool: AddressPool): string {
  return `${ipv6ToString(underlay6.host(pool.first - underlay.network))}-${ipv6ToString(underlay6.host(pool.last - underlay.network))}`;
}

/** Underlay hosts .200-.250 (the upper half of a smaller underlay, broadcast excluded). */
function defaultPool(underlay: Cidr): AddressPool {
  const size = underlay.size;
  if (size >= 256) return { first: underlay.network + 200, last: underlay.network + 250 };
  return { first: underlay.network + size / 2, last: underlay.network + size - 2 };
}

function planError(topology: Topology, errors: string[]): Error {
  return topologyError(topology.source.includes('/') ? basename(topology.source) : topology.source, errors);
}

/** Locally administered unicast MAC (0x0e: bit 1 set, bit 0 clear) unique per node. */
function vtepMac(index: number): string {
  return `0e:74:6c:00:${((index >> 8) & 255).toString(16).padStart(2, '0')}:${(index & 255).toString(16).padStart(2, '0')}`;
}

function daemonPaths(stateDir: string, node: string): NodeState['daemon'] {
  const dir = join(stateDir, 'nodes', node);
  return { pid: null, config: join(dir, 'daemon.json'), log: join(dir, 'daemon.log'), status: join(dir, 'daemon-status.json') };
}

function agentPaths(stateDir: string, node: string): NonNullable<NodeState['agent']> {
  const dir = join(stateDir, 'nodes', node);
  return { pid: null, dir, config: join(dir, 'agent.yaml'), controlSocket: join(dir, 'agent.sock'), log: join(dir, 'agent.log') };
}

/** The nodes' list every agent config carries (the lab is the cluster's source of truth). */
export function clusterNodes(state: LabState): { name: string; underlayIP: string; underlayIPv6?: string; podCIDR: string; podCIDRv6?: string }[] {
  const six = isIpv6Underlay(state);
  return state.nodes.map((n) => ({
    name: n.name, underlayIP: n.underlayIP, ...(six ? { underlayIPv6: n.underlayIP6! } : {}), podCIDR: n.podCIDR, ...(n.podCIDRv6 === undefined ? {} : { podCIDRv6: n.podCIDRv6 }),
  }));
}
