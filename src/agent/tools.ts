// Operator tools on the control socket: per-port counters (`stats`), packet capture
// of a port into a pcap file (`captureStart` / `captureStop`, used by `tapir capture`)
// and the explanation of a packet's fate (`trace`). They see the agent through
// `ToolsHost`, the few things they read, not the agent itself.
import { PcapLinkType, PcapWriter } from '../pcap/index.ts';
import { PortCapture } from '../datapath/capture.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { DatapathDrop } from '../datapath/counters.ts';
import { explainRoute, explainRoute6, RouteFrom, type Route } from '../datapath/forwarding.ts';
import { PortKind } from '../datapath/port.ts';
import { EntryPoint, natReasonNames } from '../services/nat-codes.ts';
import { conntrackCounterNames, type Conntrack } from '../tables/conntrack.ts';
import { traceServicePacket } from '../services/trace.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv4, ipv4ToString, isIpv6Text, ipv6ToString, parseIpv6 } from '../wire/index.ts';
import type { ControlHandler } from './control-server.ts';
import {
  ControlError, ControlErrorCode,
  type CaptureStartInfo, type CaptureStopInfo, type PortStats, type StatsInfo, type TraceInfo, type TraceRequest,
} from './protocol.ts';

/** What the tools read of the agent. */
export interface ToolsHost {
  readonly datapath: Datapath;
  /** The TUN's name, for the egress line. */
  readonly hostTun: string;
  /** SNAT sources of the agent's own NAT engine, so a trace decides as it would. */
  readonly masqueradeIP: number;
  readonly hairpinIP: number;
  /** Datapath port index of a pod (name, namespace/name, container ID), its TAP, or the host TUN ('host' or its name); -1 if none. */
  portIndex(name: string): number;
  /** "namespace/name" of the pod on a datapath port, or '' when unknown. */
  podOnPort(index: number): string;
  /** The live service snapshot; null without manifests. */
  serviceSnapshot(): ServiceSnapshot | null;
}

/** A capture the client forgot to stop ends by itself after this long. */
export const CAPTURE_DEFAULT_SECONDS = 300;

interface ActiveCapture {
  capture: PortCapture;
  timer: NodeJS.Timeout;
  detach(): void;
}

export class AgentTools {
  readonly #host: ToolsHost;
  readonly #captures = new Map<string, ActiveCapture>();

  constructor(host: ToolsHost) {
    this.#host = host;
  }

  stats(): StatsInfo {
    const dp = this.#host.datapath;
    const ports: PortStats[] = [];
    for (const p of dp.ports) {
      if (p === undefined) continue;
      ports.push({ index: p.index, name: p.name, kind: p.kind === PortKind.POD ? 'pod' : 'host', ...p.counters.toJSON() });
    }
    ports.push({ index: -1, name: 'underlay', kind: 'underlay', ...dp.underlayCounters.toJSON() });
    const v4 = natStats(dp.serviceNat);
    const v6 = natStats(dp.serviceNat6);
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    const memory = { rss, heapUsed, heapTotal, external, arrayBuffers };
    return {
      ports, coalescedSegments: dp.coalescedSegments, tunnelOffload: { on: dp.tunnelEgress !== null, ...dp.superFrames },
      answerReads: { found: dp.chaseHits, empty: dp.chaseMisses }, portFailures: dp.portFailures, underlayRecvErrors: dp.underlayRecvErrors,
      conntrack: v4.conntrack, natRefusals: v4.refusals, conntrack6: v6.conntrack, natRefusals6: v6.refusals, memory,
    };
  }

  /** Starts writing the frames of `port` ('underlay', 'host', a pod or its TAP name) to `file`. */
  captureStart(port: string, file: string, seconds = CAPTURE_DEFAULT_SECONDS): CaptureStartInfo {
    if (this.#captures.has(port)) throw new ControlError(ControlErrorCode.conflict, `a capture of ${port} is already running`);
    const dp = this.#host.datapath;
    let attach: (c: PortCapture) => void;
    let detach: () => void;
    let linkType: number;
    if (port === 'underlay') {
      linkType = PcapLinkType.ETHERNET;
      attach = (c) => { dp.underlayCapture = c; };
      detach = () => { dp.underlayCapture = null; };
    } else {
      const index = this.#host.portIndex(port);
      const p = index >= 0 ? dp.ports[index] : undefined;
      if (p === undefined) throw new ControlError(ControlErrorCode.notFound, `no port '${port}': name a pod, its TAP, 'host' or 'underlay'`);
      linkType = p.kind === PortKind.HOST ? PcapLinkType.RAW_IP : PcapLinkType.ETHERNET;
      attach = (c) => { p.capture = c; };
      detach = () => { if (dp.ports[index] === p) p.capture = null; };
    }
    const capture = new PortCapture(PcapWriter.toFile(file, { linkType }), port === 'underlay');
    attach(capture);
    const timer = setTimeout(() => this.captureStop(port), seconds * 1000);
    timer.unref();
    this.#captures.set(port, { capture, timer, detach });
    return { port, linkType };
  }

  captureStop(port: string): CaptureStopInfo {
    const c = this.#captures.get(port);
    if (c === undefined) throw new ControlError(ControlErrorCode.notFound, `no capture of ${port} is running`);
    this.#captures.delete(port);
    clearTimeout(c.timer);
    c.detach();
    const frames = c.capture.writer.framesWritten;
    c.capture.close();
    return { port, frames };
  }

  /**
   * A packet's fate on this node: the service tables as they are now (a fresh NAT
   * engine over the live snapshot, so nothing running is disturbed), then where the
   * forwarding table sends the translated packet.
   */
  trace(r: TraceRequest): TraceInfo {
    // The protocol reader took both addresses of one family (the destination's).
    if (isIpv6Text(r.dst)) return this.#trace6(r);
    const h = this.#host;
    const snapshot = h.serviceSnapshot() ?? { generation: 0, ports: [], nodePortAddresses: [] };
    const entryPoint = r.from === 'pod' ? EntryPoint.POD : r.from === 'host' ? EntryPoint.HOST : EntryPoint.EXTERNAL;
    const result = traceServicePacket(snapshot, { protocol: r.protocol, src: ipv4(r.src), srcPort: r.srcPort, dst: ipv4(r.dst), dstPort: r.dstPort, entryPoint }, {
      masqueradeIP: h.masqueradeIP,
      hairpinIP: h.hairpinIP,
      seed: 1,
      conntrack: { capacity: 1024, seed: 1 },
      affinityCapacity: 16,
    });
    let egress = 'none: the packet does not leave (see the verdict)';
    if (result.verdict === 'pass' || result.verdict === 'nated') {
      // Host and external packets both enter through the host TUN (external ones steered there).
      const from = r.from === 'pod' ? RouteFrom.POD : RouteFrom.HOST_TUN;
      egress = this.#routeText(explainRoute(h.datapath.table, result.afterDst, from), result.afterDst);
      if (r.from === 'pod' && r.protocol === 17 && h.datapath.answersLocally(result.afterDst, r.dstPort)) {
        egress = `answered in the data path by the node's DNS server, back out the pod's port (a name it forwards goes on: ${egress})`;
      }
    }
    result.steps.push(`egress: ${egress}`);
    return { ...result, egress };
  }

  /**
   * An IPv6 packet: the IPv6 half of the live snapshot through a fresh NAT66 engine,
   * then where the forwarding table's IPv6 half sends the packet as NAT left it.
   */
  #trace6(r: TraceRequest): TraceInfo {
    const h = this.#host;
    const snapshot = h.serviceSnapshot() ?? { generation: 0, ports: [], nodePortAddresses: [] };
    const entryPoint = r.from === 'pod' ? EntryPoint.POD : r.from === 'host' ? EntryPoint.HOST : EntryPoint.EXTERNAL;
    const table = h.datapath.table;
    const packet = { protocol: r.protocol, src: ipv6ToString(parseIpv6(r.src)!), srcPort: r.srcPort, dst: ipv6ToString(parseIpv6(r.dst)!), dstPort: r.dstPort, entryPoint };
    const result = traceServicePacket(snapshot, packet, {
      masqueradeIP: 0, masqueradeIP6: table.gateway6, seed: 1, conntrack: { capacity: 1024, seed: 1 }, affinityCapacity: 16,
    });
    let egress = 'none: the packet does not leave (see the verdict)';
    if (result.verdict === 'pass' || result.verdict === 'nated') {
      const from = r.from === 'pod' ? RouteFrom.POD : RouteFrom.HOST_TUN;
      const dst = parseIpv6(result.afterDst6)!;
      egress = this.#routeText(explainRoute6(table, dst, from), 0, result.afterDst6);
    }
    result.steps.push(`egress: ${egress}`);
    return { ...result, egress };
  }

  #routeText(route: Route, dst: number, dstText = ipv4ToString(dst)): string {
    const t = this.#host.datapath.table;
    switch (route.kind) {
      case 'gateway':
        return `the pod gateway ${dstText} (the agent answers echo requests)`;
      case 'pod': {
        const pod = this.#host.podOnPort(route.port);
        return `pod port ${this.#host.datapath.ports[route.port]?.name ?? route.port}${pod === '' ? '' : ` (${pod})`}`;
      }
      case 'remote-node':
        return `VXLAN (VNI ${t.vni}) to ${t.remotes[route.node]!.name} at ${t.underlayFamily === 6 ? ipv6ToString(t.remotes[route.node]!.underlayIP6!) : ipv4ToString(t.nodeUnderlay[route.node]!)}`;
      case 'host-tun':
        return `host TUN ${this.#host.hostTun} (the node's own stack${dst === t.underlayIP || (dstText.includes(':') && dstText === ipv6ToString(t.gateway6)) ? '' : ', which routes it on'})`;
      case 'drop':
        if (route.reason === DatapathDrop.IPV6_UNSUPPORTED) return `dropped: this node has no IPv6 pod range (ipv6-unsupported)`;
        return route.reason === DatapathDrop.NO_SUCH_POD
          ? `dropped: no pod has ${dstText} on this node`
          : `dropped: no route to ${dstText} (not a pod or node address, and it came from the node's own stack)`;
    }
  }

  /** Extra control-socket operations, merged into the port manager's handler. */
  handler(): Pick<ControlHandler, 'stats' | 'captureStart' | 'captureStop' | 'trace'> {
    return {
      trace: (r) => this.trace(r),
      stats: () => this.stats(),
      captureStart: (r) => this.captureStart(r.port, r.file, r.seconds),
      captureStop: (r) => this.captureStop(r.port),
    };
  }

  close(): void {
    for (const port of [...this.#captures.keys()]) this.captureStop(port);
  }
}

/** One service NAT's conntrack figures and refusals by reason, for `tapir stats`. */
function natStats(nat: { conntrack: Conntrack; reasons: Float64Array } | null): { conntrack: StatsInfo['conntrack']; refusals: Record<string, number> } {
  const refusals: Record<string, number> = {};
  if (nat === null) return { conntrack: null, refusals };
  for (let i = 1; i < natReasonNames.length; i++) if (nat.reasons[i]! > 0) refusals[natReasonNames[i]!] = nat.reasons[i]!;
  const ct = nat.conntrack;
  const counters: Record<string, number> = {};
  conntrackCounterNames.forEach((name, i) => { counters[name] = ct.counters[i]!; });
  return { conntrack: { entries: ct.size, capacity: ct.capacity, maxUnassuredPerSource: ct.maxUnassuredPerSource, counters }, refusals };
}
