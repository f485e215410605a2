// Operator tools on the control socket: per-port counters (`stats`) and packet capture
// of a port into a pcap file (`captureStart` / `captureStop`, used by `tapir capture`).
import { PcapLinkType, PcapWriter } from '../pcap/index.ts';
import { PortCapture } from '../datapath/capture.ts';
import { PortKind } from '../datapath/port.ts';
import { ControlError, ControlErrorCode } from './protocol.ts';
import type { ControlHandler } from './control-server.ts';
import type { TraceRequest } from './protocol.ts';
import { EntryPoint } from '../services/nat-codes.ts';
import { traceServicePacket, type TraceResult } from '../services/trace.ts';
import { ipv4 } from '../wire/index.ts';
import type { Agent } from './agent.ts';

/** A capture the client forgot to stop ends by itself after this long. */
export const CAPTURE_DEFAULT_SECONDS = 300;

export interface PortStats {
  index: number;
  name: string;
  kind: 'pod' | 'host' | 'underlay';
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  drops: Record<string, number>;
}

interface ActiveCapture {
  capture: PortCapture;
  timer: NodeJS.Timeout;
  detach(): void;
}

export class AgentTools {
  readonly #agent: Agent;
  readonly #captures = new Map<string, ActiveCapture>();

  constructor(agent: Agent) {
    this.#agent = agent;
  }

  stats(): { ports: PortStats[]; coalescedSegments: number } {
    const dp = this.#agent.datapath;
    const ports: PortStats[] = [];
    for (const p of dp.ports) {
      if (p === undefined) continue;
      ports.push({ index: p.index, name: p.name, kind: p.kind === PortKind.POD ? 'pod' : 'host', ...p.counters.toJSON() });
    }
    ports.push({ index: -1, name: 'underlay', kind: 'underlay', ...dp.underlayCounters.toJSON() });
    return { ports, coalescedSegments: dp.coalescedSegments };
  }

  /** Starts writing the frames of `port` ('underlay', 'host', a pod or its TAP name) to `file`. */
  captureStart(port: string, file: string, seconds = CAPTURE_DEFAULT_SECONDS): { port: string; linkType: number } {
    if (this.#captures.has(port)) throw new ControlError(ControlErrorCode.conflict, `a capture of ${port} is already running`);
    const dp = this.#agent.datapath;
    let attach: (c: PortCapture) => void;
    let detach: () => void;
    let linkType: number;
    if (port === 'underlay') {
      linkType = PcapLinkType.ETHERNET;
      attach = (c) => { dp.underlayCapture = c; };
      detach = () => { dp.underlayCapture = null; };
    } else {
      const index = this.#agent.portIndex(port);
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

  captureStop(port: string): { port: string; frames: number } {
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
  trace(r: TraceRequest): TraceResult & { egress: string } {
    const a = this.#agent;
    const snapshot = a.serviceSnapshot ?? { generation: 0, ports: [], nodePortAddresses: [] };
    const entryPoint = r.from === 'pod' ? EntryPoint.POD : r.from === 'host' ? EntryPoint.HOST : EntryPoint.EXTERNAL;
    const result = traceServicePacket(snapshot, { protocol: r.protocol, src: ipv4(r.src), srcPort: r.srcPort, dst: ipv4(r.dst), dstPort: r.dstPort, entryPoint }, {
      masqueradeIP: a.config.underlayAddress,
      hairpinIP: a.config.podCIDR.host(1),
      seed: 1,
      conntrack: { capacity: 1024, seed: 1 },
      affinityCapacity: 16,
    });
    let egress = 'none: the packet does not leave (see the verdict)';
    if (result.verdict === 'pass' || result.verdict === 'nated') {
      const dst = ipv4(/-> ([\d.]+):/.exec(result.after)?.[1] ?? r.dst);
      egress = a.routeOf(dst);
    }
    result.steps.push(`egress: ${egress}`);
    return { ...result, egress };
  }

  /** Extra control-socket operations, merged into the port manager's handler. */
  handler(): Pick<ControlHandler, 'stats' | 'captureStart' | 'captureStop' | 'trace'> {
    return {
      trace: (r) => ({ ...this.trace(r) }),
      stats: () => this.stats(),
      captureStart: (r) => this.captureStart(r.port, r.file, r.seconds),
      captureStop: (r) => this.captureStop(r.port),
    };
  }

  close(): void {
    for (const port of [...this.#captures.keys()]) this.captureStop(port);
  }
}
