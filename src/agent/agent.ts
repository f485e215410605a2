// The node agent: owns the host TUN, the underlay socket and (through the port
// manager) every pod's TAP, runs the datapath over them, and serves the control socket.
// Control work (ports appearing or leaving) recompiles the forwarding table and swaps it
// into the datapath whole.
import { mkdirSync } from 'node:fs';
import { ip as runIp } from '../device/ip-command.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../device/tun.ts';
import { UdpBatchSocket } from '../device/udp.ts';
import { Datapath } from '../datapath/datapath.ts';
import { ForwardingTable, macForIpv4, type PodEntry } from '../datapath/forwarding.ts';
import { PortKind } from '../datapath/port.ts';
import { ipv4ToString, VIRTIO_NET_HEADER_LENGTH, VXLAN_PORT } from '../wire/index.ts';
import type { AgentConfig } from './config.ts';
import { ControlServer } from './control-server.ts';
import { PortManager, type PodPort } from './ports.ts';
import { AgentTools } from './tools.ts';
import { ServiceSync } from './service-sync.ts';
import { buildServiceTable } from '../tables/service-table.ts';
import { ServiceNat } from '../services/nat.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import type { SyncObserver } from '../control/sync-observer.ts';

/** Conntrack garbage collection: a slice of the table per tick. */
const CONNTRACK_GC_INTERVAL_MS = 1000;
const CONNTRACK_GC_SLICE = 8192;

export interface AgentOptions {
  log?: (message: string) => void;
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
  readonly #podIndex = new Map<string, { index: number; ip: number }>();
  #control: ControlServer | null = null;
  readonly tools: AgentTools;
  #services: ServiceSync | null = null;
  #gcTimer: NodeJS.Timeout | null = null;

  private constructor(config: AgentConfig, hostDevice: TunDevice, underlay: UdpBatchSocket, log: (m: string) => void) {
    this.config = config;
    this.#log = log;
    this.#hostDevice = hostDevice;
    this.#underlay = underlay;
    this.datapath = new Datapath(this.#compile(), underlay);
    this.datapath.addPort(PortKind.HOST, config.hostTun, hostDevice, hostDevice.vnetHdrSize);
    this.datapath.onPortFailed = (port, err) => this.#portFailed(port.name, err);
    this.#ports = new PortManager({
      stateDir: config.stateDir,
      mtu: config.mtu,
      gateway: config.podCIDR.host(1),
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
    const host = TunDevice.open({ name: config.hostTun, mode: 'tun', vnetHdr: true, vnetHdrSize: VIRTIO_NET_HEADER_LENGTH, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 });
    let underlay: UdpBatchSocket;
    try {
      await ip(['link', 'set', 'dev', host.name, 'mtu', String(config.mtu), 'up']);
      // The whole pod network (local and remote pods) is reached through the agent; the
      // node's underlay address is the source, so pods see the node as itself.
      await ip(['route', 'replace', config.clusterCIDR.toString(), 'dev', host.name, 'src', ipv4ToString(config.underlayAddress)]);
      // Cluster IPs are virtual: the node reaches them through the agent too.
      await ip(['route', 'replace', config.serviceCIDR.toString(), 'dev', host.name, 'src', ipv4ToString(config.underlayAddress)]);
      underlay = UdpBatchSocket.open({ address: ipv4ToString(config.underlayAddress), port: VXLAN_PORT, gso: true, gro: true });
    } catch (err) {
      host.close();
      throw err;
    }
    const agent = new Agent(config, host, underlay, log);
    try {
      const restored = await agent.#ports.restore();
      if (restored.reattached.length + restored.recreated.length > 0) {
        log(`restored ${restored.reattached.length + restored.recreated.length} pod port(s) from ${config.stateDir}`);
      }
      if (config.manifests !== null) {
        const services = new ServiceSync({ config, manifests: config.manifests, log, observer: opts.observer, onSnapshot: (snap) => agent.#programServices(snap) });
        agent.#services = services;
        await services.start();
        log(`services: ${services.snapshot?.ports.length ?? 0} service port(s) from ${config.manifests}`);
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
    log(`node ${config.nodeName}: pods ${config.podCIDR}, gateway ${ipv4ToString(config.podCIDR.host(1))}, underlay ${ipv4ToString(config.underlayAddress)}:${VXLAN_PORT} (GSO ${underlay.gsoSupported ? 'on' : 'off'}, GRO ${underlay.groEnabled ? 'on' : 'off'}), VNI ${config.vni}, MTU ${config.mtu}, control ${config.controlSocket}`);
    return agent;
  }

  status(): { node: string; podCIDR: string; gateway: string; mtu: number; ports: number } {
    return {
      node: this.config.nodeName,
      podCIDR: this.config.podCIDR.toString(),
      gateway: ipv4ToString(this.config.podCIDR.host(1)),
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
    this.#podIndex.set(p.hostName, { index, ip: p.ip });
    this.datapath.setTable(this.#compile());
    this.#log(`pod port ${p.hostName} (${p.podNamespace}/${p.podName}) ${ipv4ToString(p.ip)} -> datapath port ${index}`);
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
    this.#log(`pod port ${hostName} (${pod.podNamespace}/${pod.podName}, ${ipv4ToString(pod.ip)}) failed and is out of the datapath: ${err.message}; `
      + 'the pod\'s namespace or eth0 is gone; its address stays reserved until CNI DEL');
  }

  #portRemoved(p: PodPort): void {
    const entry = this.#podIndex.get(p.hostName);
    if (entry === undefined) return;
    this.#podIndex.delete(p.hostName);
    this.datapath.setTable(this.#compile());
    this.datapath.removePort(entry.index);
    this.#log(`pod port ${p.hostName} ${ipv4ToString(p.ip)} removed`);
  }

  /** A new service snapshot: its tables swap into the datapath between two batches. */
  #programServices(snapshot: ServiceSnapshot): void {
    const table = buildServiceTable(snapshot);
    for (const problem of table.problems) this.#log(`services: ${problem}`);
    const nat = this.datapath.serviceNat;
    if (nat !== null) {
      const flushed = nat.setTable(table);
      if (flushed > 0) this.#log(`services: ${flushed} UDP flow(s) to removed endpoints flushed`);
      return;
    }
    this.datapath.setServiceNat(new ServiceNat(table, {
      masqueradeIP: this.config.underlayAddress,
      // A pod reaching itself through its service is masqueraded to its gateway, which
      // it can answer on the pod network (kube-proxy's hairpin masquerade).
      hairpinIP: this.config.podCIDR.host(1),
      conntrack: { capacity: this.config.conntrackSize, timeouts: this.config.conntrackTimeouts },
    }));
    this.#gcTimer = setInterval(() => this.datapath.expireServiceFlows(CONNTRACK_GC_SLICE), CONNTRACK_GC_INTERVAL_MS);
    this.#gcTimer.unref();
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
    for (const { index, ip } of this.#podIndex.values()) pods.push({ port: index, ip, mac: macForIpv4(ip) });
    return new ForwardingTable({
      podCIDR: c.podCIDR,
      clusterCIDR: c.clusterCIDR,
      underlayIP: c.underlayAddress,
      vni: c.vni,
      mtu: c.mtu,
      pods,
      remotes: c.nodes.filter((n) => n.name !== c.nodeName).map((n) => ({ name: n.name, underlayIP: n.underlayIP, podCIDR: n.podCIDR })),
    });
  }

  /**
   * Stops serving and closes every device. Pod TAPs stay (persistent, down to no
   * traffic) for the next agent to re-attach, unless `removePorts`.
   */
  async stop(opts: { removePorts?: boolean } = {}): Promise<void> {
    await this.#control?.close();
    this.#control = null;
    if (this.#gcTimer !== null) clearInterval(this.#gcTimer);
    await this.#services?.stop();
    this.tools.close();
    this.datapath.close();
    await this.#ports.close({ keepPorts: opts.removePorts !== true });
    this.#underlay.close();
    this.#hostDevice.close();
  }
}

/** Setting up the host TUN in the node's namespace failed: the agent does not start. */
export class AgentStartError extends TapirError {
  readonly code = 'TAPIR_AGENT_START';
}

async function ip(args: string[]): Promise<void> {
  try {
    await runIp(args);
  } catch (err) {
    throw new AgentStartError((err as Error).message, { cause: err });
  }
}
