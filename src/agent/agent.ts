// The node agent: owns the host TUN, the underlay socket and (through the port
// manager) every pod's TAP, runs the datapath over them, and serves the control socket.
// Control work (ports appearing or leaving) recompiles the forwarding table and swaps it
// into the datapath whole.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ip as runIp } from '../device/ip-command.ts';
import { startTunnelOffload, type TunnelOffload } from './tunnel-egress.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../device/tun.ts';
import { UdpBatchSocket } from '../device/udp.ts';
import { setBusyPoll } from '../device/busy-poll.ts';
import { Datapath } from '../datapath/datapath.ts';
import { ForwardingTable, type PodEntry } from '../datapath/forwarding.ts';
import { PortKind } from '../datapath/port.ts';
import { ipv4ToString, VIRTIO_NET_HEADER_LENGTH, VXLAN_PORT } from '../wire/index.ts';
import type { AgentConfig, NodeRecord } from './config.ts';
import type { NodeObject } from '../k8s/objects.ts';
import { ipv6ToString, parseCidr, parseCidr6, parseIpv4, parseIpv6 } from '../wire/address.ts';
import { ControlServer } from './control-server.ts';
import type { StatusInfo } from './protocol.ts';
import { PortManager, podAddresses, type PodPort } from './ports.ts';
import { AgentTools } from './tools.ts';
import { ServiceSync } from './service-sync.ts';
import { HeapTrim } from '../control/heap-trim.ts';
import { buildServiceTable, buildServiceTable6, updateServiceTable, updateServiceTable6 } from '../tables/service-table.ts';
import { ServiceNat6 } from '../services/nat6.ts';
import { ServiceNat, type ServiceIds } from '../services/nat.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import type { SyncObserver } from '../control/sync-observer.ts';
import { bootId, mapSharedFile } from '../device/shared-memory.ts';
import { flowStoreBytes, openFlowStore, type FlowStore } from '../tables/flow-store.ts';
import { AFFINITY_DEFAULT_CAPACITY } from '../tables/affinity.ts';
import type { Registry } from 'prom-client';
import { ClusterDns } from './cluster-dns.ts';

/** Conntrack garbage collection: a slice of the table per tick. */
const CONNTRACK_GC_INTERVAL_MS = 1000;
const CONNTRACK_GC_SLICE = 8192;
/** The flow tables' memory in the state directory (a tmpfs under /run): conntrack and affinity outlive the agent. */
const FLOW_STORE_FILE = 'flow-tables';
/** The service port ids the flow tables' entries carry, for the next agent. */
const SERVICE_IDS_FILE = 'service-ids.json';

export interface AgentOptions {
  log?: (message: string) => void;
  /** A condition the agent cannot run on (the DNS server's loop detection); default: logged. */
  onFatal?: (err: Error) => void;
  /** Told of service changes, syncs and this node's Node (healthz, metrics: observability.ts). */
  observer?: SyncObserver;
}

export class Agent {
  readonly config: AgentConfig;
  readonly datapath: Datapath;
  readonly #log: (message: string) => void;
  readonly #hostDevice: TunDevice;
  readonly #underlay: UdpBatchSocket;
  readonly #ports: PortManager;
  /** Pod port (by host name) -> datapath port index. */
  readonly #podIndex = new Map<string, { index: number; ip: number; mac: number; ip6: Uint8Array | null }>();
  #control: ControlServer | null = null;
  readonly tools: AgentTools;
  #services: ServiceSync | null = null;
  #dns: ClusterDns | null = null;
  #gcTimer: NodeJS.Timeout | null = null;
  /** The kernel's UDP tunnel segmentation (tunnel-egress.ts), null where it is off. */
  #tunnelOffload: TunnelOffload | null = null;
  /** Returns the heap a large sync left unused (heap-trim.ts); made with the service proxy. */
  #heapTrim: HeapTrim | null = null;
  /** Cluster mode: the other nodes as their Node objects describe them. */
  #apiNodes: NodeRecord[] = [];
  /** idsVersion of the service NATs (IPv4, IPv6) when their ids were last written for a successor. */
  #savedIdsVersion = -1;
  #savedIdsVersion6 = -1;

  private constructor(config: AgentConfig, hostDevice: TunDevice, underlay: UdpBatchSocket, log: (m: string) => void) {
    this.config = config;
    this.#log = log;
    this.#hostDevice = hostDevice;
    this.#underlay = underlay;
    this.datapath = new Datapath(this.#compile(), underlay);
    this.datapath.addPort(PortKind.HOST, config.hostTun, hostDevice, hostDevice.vnetHdrSize);
    this.datapath.onPortFailed = (port, err) => this.#portFailed(port.name, err);
    if (config.busyPollMicros > 0) {
      log(setBusyPoll(config.busyPollMicros)
        ? `busy polling ${config.busyPollMicros} µs after traffic`
        : 'busyPollMicros is set but the native addon predates busy polling (rebuild it: scripts/build-native.sh); not busy polling');
    }
    this.#ports = new PortManager({
      stateDir: config.stateDir,
      mtu: config.mtu,
      gateway: config.podCIDR.host(1),
      gateway6: config.podCIDRv6?.host(1) ?? null,
      onPortAdded: (p) => this.#portAdded(p),
      onPortRemoved: (p) => this.#portRemoved(p),
      log,
    });
    this.tools = new AgentTools({
      datapath: this.datapath,
      hostTun: config.hostTun,
      masqueradeIP: config.underlayAddress,
      hairpinIP: config.podCIDR.host(1),
      portIndex: (name) => this.portIndex(name),
      podOnPort: (index) => {
        const p = this.#ports.list().find((x) => this.#podIndex.get(x.hostName)?.index === index);
        return p === undefined ? '' : `${p.podNamespace}/${p.podName}`;
      },
      serviceSnapshot: () => this.serviceSnapshot,
    });
  }

  /** Opens the devices, restores pods from a previous run, and starts serving. */
  static async start(config: AgentConfig, opts: AgentOptions = {}): Promise<Agent> {
    const log = opts.log ?? (() => {});
    mkdirSync(config.stateDir, { recursive: true, mode: 0o755 });
    // The host TUN: TSO and partial checksums from the node's stack pass through to
    // pods untouched; only the underlay path segments in software.
    // Persistent, as the pods' TAPs are: while a restart is under way the node's routes
    // to pods and cluster IPs stay, and its packets wait for a retransmission instead of
    // failing with "network unreachable".
    const host = TunDevice.open({ name: config.hostTun, mode: 'tun', vnetHdr: true, vnetHdrSize: VIRTIO_NET_HEADER_LENGTH, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, persist: true });
    let underlay: UdpBatchSocket;
    try {
      // One `ip -batch` (one process, a restart's gap is made of such costs):
      // the whole pod network (local and remote pods) is reached through the agent, the
      // node's underlay address as the source, so pods see the node as itself; cluster
      // IPs are virtual, and the node reaches them through the agent too.
      const src = ipv4ToString(config.underlayAddress);
      await ip(['-batch', '-'], {
        input: [
          `link set dev ${host.name} mtu ${config.mtu} up`,
          `route replace ${config.clusterCIDR} dev ${host.name} src ${src}`,
          `route replace ${config.serviceCIDR} dev ${host.name} src ${src}`,
          ...hostTunIpv6(config, host.name),
        ].join('\n') + '\n',
      });
      // An IPv6 underlay: an AF_INET6 socket on the node's IPv6 address (one family per cluster).
      const vxlanAddress = config.underlayFamily === 6 ? ipv6ToString(config.vxlanAddress6!) : ipv4ToString(config.underlayAddress);
      underlay = UdpBatchSocket.open({ address: vxlanAddress, port: VXLAN_PORT, gso: true, gro: true });
    } catch (err) {
      host.setPersist(false);
      host.close();
      throw err;
    }
    const agent = new Agent(config, host, underlay, log);
    try {
      agent.#tunnelOffload = await startTunnelOffload(config, agent.datapath, log);
      // Flows first: the moment a restored port is read, its established service flows
      // need their conntrack entries, or their replies would leave un-NATed and be reset.
      if (config.manifests !== null || config.kubernetes !== null) agent.#startServiceNat();
      const restored = await agent.#ports.restore();
      if (restored.reattached.length + restored.recreated.length > 0) {
        log(`restored ${restored.reattached.length + restored.recreated.length} pod port(s) from ${config.stateDir}, forwarding ${Math.round(performance.now())} ms after the process started`);
      }
      if (config.manifests !== null || config.kubernetes !== null) {
        const services = new ServiceSync({
          config, log, observer: opts.observer, onSnapshot: (snap) => agent.#programServices(snap),
          onNodes: (nodes) => agent.#nodesChanged(nodes),
        });
        agent.#services = services;
        await services.start();
        log(`services: ${services.snapshot?.ports.length ?? 0} service port(s) from ${config.kubernetes !== null ? 'the Kubernetes API' : config.manifests}`);
        if (config.dns !== null) agent.#dns = await ClusterDns.start(config, services, agent.datapath, log, opts.onFatal ?? ((err) => log(`dns: ${err.message}`)));
      } else if (config.dns !== null) {
        log('dns: not served: the cluster DNS server needs the Services (give manifests, or run in cluster mode)');
      }
      agent.#control = await ControlServer.listen({
        path: config.controlSocket,
        handler: { ...agent.#ports.controlHandler(() => agent.status()), ...agent.tools.handler() },
        log,
      });
    } catch (err) {
      await agent.stop();
      throw err;
    }
    const v6 = config.podCIDRv6 === null ? '' : ` and ${config.podCIDRv6}, gateway ${ipv6ToString(config.podCIDRv6.host(1))}`;
    log(`node ${config.nodeName}: pods ${config.podCIDR}, gateway ${ipv4ToString(config.podCIDR.host(1))}${v6}, underlay ${config.underlayFamily === 6 ? `[${ipv6ToString(config.vxlanAddress6!)}]` : ipv4ToString(config.underlayAddress)}:${VXLAN_PORT} (GSO ${underlay.gsoSupported ? 'on' : 'off'}, GRO ${underlay.groEnabled ? 'on' : 'off'}), VNI ${config.vni}, MTU ${config.mtu}, control ${config.controlSocket}`);
    return agent;
  }

  status(): StatusInfo {
    const v6 = this.config.podCIDRv6;
    return {
      node: this.config.nodeName,
      pid: process.pid,
      podCIDR: this.config.podCIDR.toString(),
      gateway: ipv4ToString(this.config.podCIDR.host(1)),
      ...(v6 === null ? {} : { podCIDRv6: v6.toString(), gateway6: ipv6ToString(v6.host(1)) }),
      mtu: this.config.mtu,
      ports: this.#ports.size,
    };
  }

  /** Datapath port index of a pod port by its host name, or of the host TUN ('host' or its name). */
  portIndex(name: string): number {
    if (name === 'host' || name === this.config.hostTun) return this.datapath.hostPort;
    const byHost = this.#podIndex.get(name);
    if (byHost !== undefined) return byHost.index;
    // Also by pod: "podName", "namespace/podName" or the container ID.
    for (const p of this.#ports.list()) {
      if (p.podName === name || `${p.podNamespace}/${p.podName}` === name || p.containerId === name) return this.#podIndex.get(p.hostName)?.index ?? -1;
    }
    return -1;
  }

  #portAdded(p: PodPort): void {
    const index = this.datapath.addPort(PortKind.POD, p.hostName, p.device, p.device.vnetHdrSize);
    this.#podIndex.set(p.hostName, { index, ip: p.ip, mac: p.mac, ip6: p.ip6 });
    this.datapath.setTable(this.#compile());
    this.#log(`pod port ${p.hostName} (${p.podNamespace}/${p.podName}) ${podAddresses(p)} -> datapath port ${index}`);
  }

  /** A port's device failed: out of the forwarding table now, its record kept until CNI DEL. */
  #portFailed(hostName: string, err: Error): void {
    const pod = this.#ports.list().find((p) => p.hostName === hostName);
    if (pod === undefined) {
      this.#log(`port ${hostName} failed and is out of the datapath: ${err.message}${hostName === this.config.hostTun ? '; the node can no longer reach pods through it until the agent restarts' : ''}`);
      return;
    }
    this.#podIndex.delete(hostName);
    this.datapath.setTable(this.#compile());
    this.#ports.markFailed(pod);
    this.#log(`pod port ${hostName} (${pod.podNamespace}/${pod.podName}, ${podAddresses(pod)}) failed and is out of the datapath: ${err.message}; `
      + 'the pod\'s namespace or eth0 is gone; its address stays reserved until CNI DEL');
  }

  #portRemoved(p: PodPort): void {
    const entry = this.#podIndex.get(p.hostName);
    if (entry === undefined) return;
    this.#podIndex.delete(p.hostName);
    this.datapath.setTable(this.#compile());
    this.datapath.removePort(entry.index);
    this.#log(`pod port ${p.hostName} ${podAddresses(p)} removed`);
  }

  /**
   * The service NAT, before any service is known: an empty table (nothing is a service
   * until the first full sync) over the flow tables a previous agent left in the state
   * directory, so its established flows go on being translated as they were.
   */
  #startServiceNat(): void {
    const store = this.#openFlowStore();
    let serviceIds: ServiceIds | undefined;
    if (store !== null && !store.fresh) serviceIds = this.#loadServiceIds();
    const nat = new ServiceNat(buildServiceTable({ generation: 0, ports: [], nodePortAddresses: [] }), {
      masqueradeIP: this.config.underlayAddress,
      // A pod reaching itself through its service is masqueraded to its gateway, which
      // it can answer on the pod network (kube-proxy's hairpin masquerade).
      hairpinIP: this.config.podCIDR.host(1),
      conntrack: { capacity: this.config.conntrackSize, timeouts: this.config.conntrackTimeouts },
      ...(store === null ? {} : { store }),
      ...(serviceIds === undefined ? {} : { serviceIds }),
    });
    if (store !== null && !store.fresh) {
      this.#log(`flows: took over ${nat.conntrack.restored} conntrack entr${nat.conntrack.restored === 1 ? 'y' : 'ies'} and the session affinity of the previous agent`);
    }
    this.datapath.setServiceNat(nat);
    this.#startServiceNat6(store, store !== null && !store.fresh ? this.#loadServiceIds('ids6', 'next6') : undefined);
    this.datapath.servicesSynced = false;
    this.#gcTimer = setInterval(() => this.datapath.expireServiceFlows(CONNTRACK_GC_SLICE), CONNTRACK_GC_INTERVAL_MS);
    this.#gcTimer.unref();
    this.#heapTrim = new HeapTrim({ log: this.#log });
  }

  /**
   * The IPv6 service NAT (NAT66) of a node with IPv6 pods: masquerading to the node's
   * IPv6 pod gateway, which every endpoint routes back to this node over the overlay.
   */
  #startServiceNat6(store: FlowStore | null, serviceIds: ServiceIds | undefined): void {
    const c = this.config;
    if (c.podCIDRv6 === null) return;
    const nat6 = new ServiceNat6(buildServiceTable6({ generation: 0, ports: [], nodePortAddresses: [] }), {
      masqueradeIP: c.podCIDRv6.host(1),
      // The flow store's IPv6 regions (a quarter of the IPv4 sizes by default), or tables of this process only.
      conntrack: { capacity: Math.max(1024, c.conntrackSize >> 2), timeouts: c.conntrackTimeouts },
      ...(store === null ? {} : { store }),
      ...(serviceIds === undefined ? {} : { serviceIds }),
    });
    if (store !== null && !store.fresh && nat6.conntrack.restored > 0) this.#log(`flows: took over ${nat6.conntrack.restored} IPv6 conntrack entr${nat6.conntrack.restored === 1 ? 'y' : 'ies'}`);
    this.datapath.setServiceNat6(nat6);
  }

  /** The flow tables' shared memory, or null (tables in this process only) when it cannot be had. */
  #openFlowStore(): FlowStore | null {
    const path = join(this.config.stateDir, FLOW_STORE_FILE);
    const layout = { conntrackCapacity: this.config.conntrackSize, affinityCapacity: AFFINITY_DEFAULT_CAPACITY };
    try {
      const mapping = mapSharedFile(path, flowStoreBytes(layout));
      const store = openFlowStore(mapping.buffer, layout, bootId(), !mapping.fresh);
      if (store.discarded !== '') this.#log(`flows: the flow tables in ${path} were not taken over (${store.discarded}); starting empty`);
      return store;
    } catch (err) {
      this.#log(`flows: cannot map ${path} (${(err as Error).message}); flows will not survive an agent restart`);
      return null;
    }
  }

  /** The service port ids a previous agent saved: the IPv4 NAT's (`ids`, `next`) or the IPv6 one's (`ids6`, `next6`). */
  #loadServiceIds(idsField = 'ids', nextField = 'next'): ServiceIds | undefined {
    const path = join(this.config.stateDir, SERVICE_IDS_FILE);
    try {
      const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      const next = saved[nextField];
      const ids = saved[idsField];
      if (typeof next !== 'number' || typeof ids !== 'object' || ids === null) throw new Error(`not a service id file (no ${idsField})`);
      const byKey = new Map<string, number>();
      for (const [key, id] of Object.entries(ids)) if (typeof id === 'number') byKey.set(key, id);
      return { byKey, next };
    } catch (err) {
      // Tags of the old entries then match no service port: their flows go on, only
      // a UDP endpoint's removal will not find them (they time out instead). New ids
      // start past every tag taken over (ServiceNat).
      this.#log(`flows: cannot read ${path} (${(err as Error).message}); taken-over flows keep their NAT but lose their service port`);
      return undefined;
    }
  }

  /** Writes the service port ids for a successor, when they changed (before any packet uses new ones). */
  #saveServiceIds(nat: ServiceNat, nat6: ServiceNat6 | null): void {
    if (nat.idsVersion === this.#savedIdsVersion && (nat6 === null || nat6.idsVersion === this.#savedIdsVersion6)) return;
    const { byKey, next } = nat.serviceIds();
    const v6 = nat6?.serviceIds();
    const path = join(this.config.stateDir, SERVICE_IDS_FILE);
    try {
      writeFileSync(`${path}.tmp`, JSON.stringify({ next, ids: Object.fromEntries(byKey), ...(v6 === undefined ? {} : { next6: v6.next, ids6: Object.fromEntries(v6.byKey) }) }));
      renameSync(`${path}.tmp`, path);
      this.#savedIdsVersion = nat.idsVersion;
      this.#savedIdsVersion6 = nat6?.idsVersion ?? -1;
    } catch (err) {
      this.#log(`flows: cannot write ${path}: ${(err as Error).message}`);
    }
  }

  /** A new service snapshot: its tables swap into the datapath between two batches. */
  #programServices(snapshot: ServiceSnapshot): void {
    const nat = this.datapath.serviceNat;
    // One endpoint change touches one port's lists (updateServiceTable), not all 10k.
    const table = nat === null ? buildServiceTable(snapshot) : updateServiceTable(nat.table, snapshot);
    for (const problem of table.problems) this.#log(`services: ${problem}`);
    if (nat === null) return;
    const nat6 = this.datapath.serviceNat6;
    let flushed = nat.setTable(table);
    if (nat6 !== null) {
      const table6 = updateServiceTable6(nat6.table, snapshot);
      for (const problem of table6.problems) this.#log(`services: ${problem}`);
      flushed += nat6.setTable(table6);
    }
    this.datapath.servicesSynced = true;
    // Synchronously, before the next batch: a successor must know every id a flow can carry.
    this.#saveServiceIds(nat, nat6);
    if (flushed > 0) this.#log(`services: ${flushed} UDP flow(s) to removed endpoints flushed`);
    // How much the services side holds: a sync that leaves a fraction of it (a mass
    // deletion) leaves the rest as garbage, which a collection frees in little time.
    let held = snapshot.ports.length + (snapshot.ports6?.length ?? 0);
    for (const p of snapshot.ports) held += p.allEndpoints.length;
    for (const p of snapshot.ports6 ?? []) held += p.allEndpoints.length;
    this.#heapTrim?.afterSync(held);
  }

  get serviceSnapshot(): ServiceSnapshot | null {
    return this.#services?.snapshot ?? null;
  }

  /** Service and endpoint changes waiting for the next sync; null without a service proxy. */
  pendingServiceChanges(): { services: number; endpoints: number } | null {
    return this.#services?.pendingChanges() ?? null;
  }

  /** The services as this agent's control side sees them (for status), or null without manifests. */
  describeServices(): unknown[] | null {
    return this.#services?.describe() ?? null;
  }

  #compile(): ForwardingTable {
    const c = this.config;
    const pods: PodEntry[] = [];
    for (const { index, ip, mac, ip6 } of this.#podIndex.values()) pods.push({ port: index, ip, mac, ip6 });
    return new ForwardingTable({
      podCIDR: c.podCIDR,
      clusterCIDR: c.clusterCIDR,
      podCIDR6: c.podCIDRv6,
      clusterCIDR6: c.clusterCIDRv6,
      underlayIP: c.underlayAddress,
      // Over an IPv6 underlay the tunnel's address is one of the node's own too.
      underlayIP6: c.underlayAddressV6 ?? c.vxlanAddress6,
      underlayFamily: c.underlayFamily,
      vni: c.vni,
      mtu: c.mtu,
      pods,
      // Over an IPv6 underlay a node without an IPv6 address cannot be reached (#nodesChanged leaves it out).
      remotes: [...c.nodes, ...this.#apiNodes].filter((n) => n.name !== c.nodeName && (c.underlayFamily === 4 || n.underlayIP6 != null))
        .map((n) => ({ name: n.name, underlayIP: n.underlayIP, underlayIP6: n.underlayIP6 ?? null, podCIDR: n.podCIDR, podCIDR6: n.podCIDRv6 ?? null })),
    });
  }

  /**
   * Cluster mode: the Node objects, as Flannel reads them: each node's pod CIDR is
   * reached over VXLAN at its InternalIP. A node joining or leaving recompiles the
   * forwarding table; a Node without both is left out until it has them. The IPv6 entry
   * of spec.podCIDRs (dual-stack) is the node's IPv6 pod range, over the same tunnel.
   * Over an IPv6 underlay the tunnel goes to the Node's IPv6 InternalIP, and a Node
   * without one is left out (said in the log) until it has one.
   */
  #nodesChanged(nodes: readonly NodeObject[]): void {
    const next: NodeRecord[] = [];
    const unreachable: string[] = [];
    const six = this.config.underlayFamily === 6;
    for (const n of nodes) {
      const ip = n.addresses.find((a) => a.type === 'InternalIP')?.address;
      const underlayIP = ip === undefined ? undefined : parseIpv4(ip);
      const podCIDR = n.podCIDRs?.[0] === undefined ? undefined : parseCidr(n.podCIDRs[0]);
      if (underlayIP === undefined || podCIDR === undefined) continue;
      if (this.config.nodes.some((s) => s.name === n.metadata.name)) continue; // the file's word wins
      const podCIDRv6 = n.podCIDRv6 === undefined ? null : parseCidr6(n.podCIDRv6) ?? null;
      const ip6 = six ? n.addresses6?.find((a) => a.type === 'InternalIP')?.address : undefined;
      const underlayIP6 = ip6 === undefined ? null : parseIpv6(ip6) ?? null;
      if (six && underlayIP6 === null && n.metadata.name !== this.config.nodeName) unreachable.push(n.metadata.name);
      next.push({ name: n.metadata.name, underlayIP, underlayIP6, podCIDR, podCIDRv6 });
    }
    const key = (list: NodeRecord[]): string => list.map((n) => `${n.name}=${n.underlayIP}/${n.underlayIP6 ? ipv6ToString(n.underlayIP6) : ''}/${n.podCIDR}/${n.podCIDRv6 ?? ''}`).sort().join();
    if (key(next) === key(this.#apiNodes)) return;
    this.#apiNodes = next;
    this.datapath.setTable(this.#compile());
    const at = (n: NodeRecord): string => (six && n.underlayIP6 ? ipv6ToString(n.underlayIP6) : ipv4ToString(n.underlayIP));
    this.#log(`nodes: ${next.filter((n) => n.name !== this.config.nodeName && (!six || n.underlayIP6)).map((n) => `${n.name} ${n.podCIDR}${n.podCIDRv6 ? ` ${n.podCIDRv6}` : ''} at ${at(n)}`).join(', ') || 'no other node'}`);
    if (unreachable.length > 0) this.#log(`nodes left out: ${unreachable.join(', ')} (no IPv6 InternalIP, and the underlay is IPv6)`);
  }

  /**
   * Stops serving and closes every device. Pod TAPs stay (persistent, down to no
   * traffic) for the next agent to re-attach, unless `removePorts`.
   */
  /** The DNS server's metrics (CoreDNS's names), for the agent's /metrics; null without one. */
  get dnsRegistry(): Registry | null {
    return this.#dns?.server.registry ?? null;
  }

  async stop(opts: { removePorts?: boolean } = {}): Promise<void> {
    await this.#control?.close();
    this.#control = null;
    await this.#dns?.stop();
    this.#dns = null;
    if (this.#gcTimer !== null) clearInterval(this.#gcTimer);
    this.#heapTrim?.stop();
    await this.#services?.stop({ remove: opts.removePorts === true });
    this.tools.close();
    this.datapath.close();
    await this.#ports.close({ keepPorts: opts.removePorts !== true });
    // Leaving for good: the flows go with the ports (a restart keeps both).
    if (opts.removePorts === true) {
      for (const f of [FLOW_STORE_FILE, SERVICE_IDS_FILE]) rmSync(join(this.config.stateDir, f), { force: true });
    }
    this.#tunnelOffload?.close();
    this.#underlay.close();
    if (opts.removePorts === true) this.#hostDevice.setPersist(false);
    this.#hostDevice.close();
  }
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
