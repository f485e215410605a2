// The node agent: owns the host TUN, the underlay socket and (through the port
// manager) every pod's TAP, runs the datapath over them, and serves the control socket.
// Control work (ports appearing or leaving) recompiles the forwarding table and swaps it
// into the datapath whole.
// This file is the agent's lifecycle, start to stop, and the ports' bookkeeping; each
// part with a job of its own lives beside it: the host TUN and its routes (host-tun.ts),
// the routes to other nodes (node-routes.ts), the service NAT and its syncs
// (service-programmer.ts) over the flows a previous agent left (flow-persistence.ts),
// the service sync (service-sync.ts), DNS (cluster-dns.ts), the control socket
// (control-server.ts) and its tools (tools.ts).
import { mkdirSync } from 'node:fs';
import { startTunnelOffload, type TunnelOffload } from './tunnel-egress.ts';
import type { TunDevice } from '../device/tun.ts';
import { UdpBatchSocket } from '../device/udp.ts';
import { setBusyPoll } from '../device/busy-poll.ts';
import { Datapath } from '../datapath/datapath.ts';
import type { ForwardingTable } from '../datapath/forwarding.ts';
import { PortKind } from '../datapath/port.ts';
import { ipv4ToString, VXLAN_PORT } from '../wire/index.ts';
import type { AgentConfig } from './config.ts';
import { ipv6ToString } from '../wire/address.ts';
import { ControlServer } from './control-server.ts';
import type { StatusInfo } from './protocol.ts';
import { PortManager, podAddresses, type PodPort } from './ports.ts';
import { AgentTools } from './tools.ts';
import { ServiceSync } from './service-sync.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import type { SyncObserver } from '../control/sync-observer.ts';
import type { Registry } from 'prom-client';
import { ClusterDns } from './cluster-dns.ts';
import { openHostTun, routeHostTun } from './host-tun.ts';
import { ServiceProgrammer } from './service-programmer.ts';
import { removeFlowFiles } from './flow-persistence.ts';
import { ClusterNodes, compileForwardingTable, type PodRoute } from './node-routes.ts';

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
  readonly #podIndex = new Map<string, PodRoute>();
  #control: ControlServer | null = null;
  readonly tools: AgentTools;
  #services: ServiceSync | null = null;
  #dns: ClusterDns | null = null;
  /** The service NAT's install, programming and upkeep (service-programmer.ts); null without services. */
  #serviceNat: ServiceProgrammer | null = null;
  /** The kernel's UDP tunnel segmentation (tunnel-egress.ts), null where it is off. */
  #tunnelOffload: TunnelOffload | null = null;
  /** Cluster mode: the other nodes as their Node objects describe them (node-routes.ts). */
  readonly #nodes: ClusterNodes;

  private constructor(config: AgentConfig, hostDevice: TunDevice, underlay: UdpBatchSocket, log: (m: string) => void) {
    this.config = config;
    this.#log = log;
    this.#hostDevice = hostDevice;
    this.#underlay = underlay;
    this.#nodes = new ClusterNodes(config, log, () => this.datapath.setTable(this.#compile()));
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
    const host = openHostTun(config);
    let underlay: UdpBatchSocket;
    try {
      await routeHostTun(config, host.name);
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
      // Flows first, before anything is awaited: the host TUN is read from here on, and
      // a steered packet of an established service flow read before its conntrack entry
      // is back (or while the datapath still takes its services as synced) would go to
      // the node's stack, which resets the connection; a restored port's replies would
      // leave un-NATed.
      if (config.manifests !== null || config.kubernetes !== null) {
        agent.#serviceNat = new ServiceProgrammer(config, agent.datapath, log);
        agent.#serviceNat.start();
      }
      agent.#tunnelOffload = await startTunnelOffload(config, agent.datapath, log);
      const restored = await agent.#ports.restore();
      if (restored.reattached.length + restored.recreated.length > 0) {
        log(`restored ${restored.reattached.length + restored.recreated.length} pod port(s) from ${config.stateDir}, forwarding ${Math.round(performance.now())} ms after the process started`);
      }
      if (config.manifests !== null || config.kubernetes !== null) {
        const services = new ServiceSync({
          config, log, observer: opts.observer, onSnapshot: (snap) => agent.#serviceNat!.program(snap),
          onNodes: (nodes) => agent.#nodes.update(nodes),
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
    return compileForwardingTable(this.config, this.#podIndex.values(), this.#nodes.apiNodes);
  }

  /** The DNS server's metrics (CoreDNS's names), for the agent's /metrics; null without one. */
  get dnsRegistry(): Registry | null {
    return this.#dns?.server.registry ?? null;
  }

  /**
   * Stops serving and closes every device. Pod TAPs stay (persistent, down to no
   * traffic) for the next agent to re-attach, unless `removePorts`.
   */
  async stop(opts: { removePorts?: boolean } = {}): Promise<void> {
    await this.#control?.close();
    this.#control = null;
    await this.#dns?.stop();
    this.#dns = null;
    this.#serviceNat?.stop();
    await this.#services?.stop({ remove: opts.removePorts === true });
    this.tools.close();
    this.datapath.close();
    await this.#ports.close({ keepPorts: opts.removePorts !== true });
    // Leaving for good: the flows go with the ports (a restart keeps both).
    if (opts.removePorts === true) removeFlowFiles(this.config.stateDir);
    this.#tunnelOffload?.close();
    this.#underlay.close();
    if (opts.removePorts === true) this.#hostDevice.setPersist(false);
    this.#hostDevice.close();
  }
}
