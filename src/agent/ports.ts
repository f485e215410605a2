// Pod ports: one TAP per (containerId, ifName), opened by the agent (which keeps the fd
// and reads and writes the pod's frames), moved into the pod's namespace as ifName and
// configured there (MAC, MTU, addresses, default routes: pod-interface.ts, which also
// says what an IPv6 pod gets).
//
// Restart. Ports are recorded in STATEDIR/ports.json and TAPs are made persistent
// (TUNSETPERSIST) once configured, so they survive the agent's fd. `restore()` on start:
//   - netns gone: the kernel already deleted the TAP with it; the record is dropped;
//   - our TAP still there (our MAC): re-attached in place, from inside the pod's
//     namespace (TUNSETIFF finds a device only in the namespace /dev/net/tun was opened
//     in; the addon enters it for the open). No command runs and the pod keeps its
//     eth0, address and routes throughout: a restart costs its traffic only the time no
//     agent reads (frames sent meanwhile are lost, and TCP sends them again);
//   - a link of that name but not ours (another kind or MAC): moved back into the
//     agent's namespace only if it is a TAP with our MAC, else the record is dropped;
//   - TAP gone, netns alive (agent stopped with close() without keepPorts): recreated.
// A pod therefore keeps its MAC and address across agent restarts. A pod deleted while
// the agent was down is noticed by restore() or by GC.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceError } from '../device/errors.ts';
import { tryIp } from '../device/ip-command.ts';
import { moveLinkToNetns } from '../device/netlink.ts';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TunDevice } from '../device/tun.ts';
import { ipv4, ipv4ToString, ipv6ToString, macToString } from '../wire/address.ts';
import { macForIpv4 } from '../datapath/forwarding.ts';
import type { ControlHandler } from './control-server.ts';
import {
  addParams, configurePodInterface, ip6Of, linkIn, macForPod, nsIp, podAddresses, sameIp6, samePrefix6, type AddPortParams,
} from './pod-interface.ts';
import { ControlError, ControlErrorCode, type PortInfo, type StatusInfo } from './protocol.ts';

export { podAddresses, type AddPortParams };

export interface PodPort {
  containerId: string;
  ifName: string;
  hostName: string;
  netns: string;
  /** 48-bit MAC, macForIpv4(ip) (macForIpv6(ip6) without IPv4): derivable from the address, so the datapath needs no table of it. */
  mac: number;
  /** IPv4 address, prefix length and gateway; 0, 0, 0 for an IPv6-only pod. */
  ip: number;
  prefixLength: number;
  gateway: number;
  /** IPv6 address (16 bytes), prefix length and gateway; null, 0, null for an IPv4-only pod. */
  ip6: Uint8Array | null;
  prefixLength6: number;
  gateway6: Uint8Array | null;
  mtu: number;
  podName: string;
  podNamespace: string;
  /** The CNI network that added it ('' when not recorded). */
  network: string;
  device: TunDevice;
  /** Its device failed (the pod's namespace or eth0 is gone); out of the datapath. */
  failed: boolean;
}

export interface PortManagerOptions {
  stateDir: string;
  mtu: number;
  /** The pods' gateway (the node's first pod address); addPort refuses any other. */
  gateway: number;
  /** The pods' IPv6 gateway (podCIDRv6's ::1); null/absent: the node has no IPv6 pod range, and refuses IPv6 pods. */
  gateway6?: Uint8Array | null;
  onPortAdded(port: PodPort): void;
  onPortRemoved(port: PodPort): void;
  /** TUNSETPERSIST configured TAPs so they outlive the agent (default true; see top). */
  persist?: boolean;
  log?: (message: string) => void;
}

export interface RestoreReport { reattached: string[]; recreated: string[]; dropped: string[] }

const OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
const STATE_FILE = 'ports.json';

/** "tp" + 8 hex of SHA-256(containerId/ifName): stable, so a restarted agent finds it again. */
export function hostNameFor(containerId: string, ifName: string): string {
  return `tp${createHash('sha256').update(`${containerId}/${ifName}`).digest('hex').slice(0, 8)}`;
}

function key(containerId: string, ifName: string): string {
  return `${containerId}/${ifName}`;
}

export class PortManager {
  readonly #opts: PortManagerOptions;
  readonly #persist: boolean;
  readonly #ports = new Map<string, PodPort>();
  readonly #log: (message: string) => void;
  // Port changes run one at a time: each runs several `ip` commands and moves devices
  // between namespaces, and the state file is rewritten after each.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: PortManagerOptions) {
    this.#opts = opts;
    this.#persist = opts.persist ?? true;
    this.#log = opts.log ?? (() => {});
  }

  get size(): number { return this.#ports.size; }
  get(containerId: string, ifName: string): PodPort | undefined { return this.#ports.get(key(containerId, ifName)); }
  list(): PodPort[] { return [...this.#ports.values()]; }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Creates the port, or returns the existing one for the same (containerId, ifName, ip). */
  addPort(p: AddPortParams): Promise<PodPort> {
    return this.#exclusive(async () => {
      const existing = this.get(p.containerId, p.ifName);
      if (existing !== undefined) {
        if (existing.ip === p.ip && sameIp6(existing.ip6, p.ip6) && existing.netns === p.netns) return existing;
        throw new ControlError(ControlErrorCode.conflict, `${key(p.containerId, p.ifName)} already has a port with ${podAddresses(existing)} in ${existing.netns}; delete it first`);
      }
      this.#validate(p);
      const port = this.#adopt(await this.#create(p, null));
      this.#save();
      return port;
    });
  }

  /** Hands the port to the datapath; if the datapath refuses it, the TAP is removed again. */
  #adopt(port: PodPort): PodPort {
    try {
      this.#opts.onPortAdded(port);
    } catch (err) {
      this.#release(port, false);
      throw err;
    }
    this.#ports.set(key(port.containerId, port.ifName), port);
    return port;
  }

  #validate(p: AddPortParams): void {
    const bad = (m: string): never => { throw new ControlError(ControlErrorCode.invalidField, m); };
    const ip6 = p.ip6 ?? null;
    if (p.ip === 0 && ip6 === null) throw new ControlError(ControlErrorCode.missingField, 'a pod needs an IPv4 address (ip) or an IPv6 address (ip6)');
    if (p.ip !== 0) {
      if (p.gateway !== this.#opts.gateway) bad(`gateway ${ipv4ToString(p.gateway)} is not this node's pod gateway ${ipv4ToString(this.#opts.gateway)}`);
      const shift = 32 - p.prefixLength;
      if (shift < 32 && p.ip >>> shift !== p.gateway >>> shift) bad(`gateway ${ipv4ToString(p.gateway)} is not inside ${ipv4ToString(p.ip)}/${p.prefixLength}`);
      if (p.ip === p.gateway) bad(`ip ${ipv4ToString(p.ip)} is the gateway`);
    }
    if (ip6 !== null) {
      const own = this.#opts.gateway6 ?? null;
      const gw6 = p.gateway6 ?? null;
      if (own === null) bad(`ip6 ${ipv6ToString(ip6)}: this node has no IPv6 pod range (podCIDRv6 in the agent config)`);
      if (gw6 === null || !sameIp6(gw6, own)) bad(`gateway6 ${gw6 === null ? '(none)' : ipv6ToString(gw6)} is not this node's IPv6 pod gateway ${ipv6ToString(own!)}`);
      if (!samePrefix6(ip6, gw6!, p.prefixLength6 ?? 128)) bad(`gateway6 ${ipv6ToString(gw6!)} is not inside ${ipv6ToString(ip6)}/${p.prefixLength6}`);
      if (sameIp6(ip6, gw6)) bad(`ip6 ${ipv6ToString(ip6)} is the gateway`);
    }
    for (const other of this.#ports.values()) {
      if (p.ip !== 0 && other.ip === p.ip) throw new ControlError(ControlErrorCode.conflict, `ip ${ipv4ToString(p.ip)} is in use by ${key(other.containerId, other.ifName)}`);
      if (ip6 !== null && sameIp6(other.ip6, ip6)) throw new ControlError(ControlErrorCode.conflict, `ip6 ${ipv6ToString(ip6)} is in use by ${key(other.containerId, other.ifName)}`);
    }
    if (!existsSync(p.netns)) throw new ControlError(ControlErrorCode.netnsNotFound, `network namespace ${p.netns} does not exist`);
  }

  /** Opens (or re-attaches to) the TAP, moves it into the pod and configures it there. */
  async #create(p: AddPortParams, existingDevice: TunDevice | null): Promise<PodPort> {
    const hostName = hostNameFor(p.containerId, p.ifName);
    const mac = macForPod(p.ip, p.ip6);
    let device: TunDevice;
    try {
      device = existingDevice ?? TunDevice.open({ name: hostName, mode: 'tap', vnetHdr: true, offloads: OFFLOADS });
    } catch (err) {
      throw new ControlError(ControlErrorCode.deviceError, `opening TAP ${hostName}: ${(err as Error).message}`);
    }
    try {
      try {
        moveLinkToNetns(hostName, p.netns, p.ifName);
      } catch (err) {
        const code = err instanceof DeviceError ? err.code : undefined;
        if (code === 'EEXIST') throw new ControlError(ControlErrorCode.conflict, `${p.netns} already has an interface named ${p.ifName}`);
        if (code === 'ENOENT') throw new ControlError(ControlErrorCode.netnsNotFound, `network namespace ${p.netns} does not exist`);
        throw new ControlError(ControlErrorCode.deviceError, `moving ${hostName} into ${p.netns} as ${p.ifName}: ${(err as Error).message}`);
      }
      const mtu = this.#opts.mtu;
      await configurePodInterface(p, mac, mtu, macForIpv4(this.#opts.gateway));
      if (this.#persist) device.setPersist(true);
      return {
        containerId: p.containerId, ifName: p.ifName, hostName, netns: p.netns, mac, ip: p.ip,
        prefixLength: p.prefixLength, gateway: p.gateway, ip6: p.ip6 ?? null, prefixLength6: p.ip6 ? p.prefixLength6 ?? 0 : 0, gateway6: p.ip6 ? p.gateway6 ?? null : null,
        mtu, podName: p.podName ?? '', podNamespace: p.podNamespace ?? '', network: p.network ?? '', device, failed: false,
      };
    } catch (err) {
      // Not yet persistent (or made non-persistent here): closing deletes the TAP wherever it is.
      try { device.setPersist(false); } catch { /* already gone with its namespace */ }
      device.close();
      throw err;
    }
  }

  /** Removes the port; absent is fine (CNI DEL is idempotent). Returns whether one existed. */
  delPort(containerId: string, ifName: string): Promise<boolean> {
    return this.#exclusive(async () => {
      const port = this.get(containerId, ifName);
      if (port === undefined) return false;
      this.#ports.delete(key(containerId, ifName));
      this.#save();
      this.#opts.onPortRemoved(port);
      this.#release(port, false);
      return true;
    });
  }

  /**
   * The datapath gave up on the port's device (its TAP went with the pod's namespace):
   * its fd is closed now, and the record stays, holding the address, until CNI DEL
   * (which then succeeds, as DEL of a vanished pod must).
   */
  markFailed(port: PodPort): void {
    port.failed = true;
    try { port.device.close(); } catch { /* already closed */ }
  }

  #release(port: PodPort, keep: boolean): void {
    if (port.failed) return; // its fd is closed, its TAP gone with the namespace
    if (!keep) {
      try { port.device.setPersist(false); } catch (err) { this.#log(`${port.hostName}: TUNSETPERSIST off: ${(err as Error).message}`); }
    }
    port.device.close();
  }

  /**
   * Throws NOT_FOUND / MISMATCH unless the port exists with exactly `ip` (0: no IPv4
   * address) and `ip6` (null: no IPv6 address) and its TAP is in the pod.
   */
  async checkPort(containerId: string, ifName: string, ip: number, ip6: Uint8Array | null = null): Promise<void> {
    const port = this.get(containerId, ifName);
    const name = key(containerId, ifName);
    if (port === undefined) throw new ControlError(ControlErrorCode.notFound, `no port for ${name}`);
    if (port.ip !== ip || !sameIp6(port.ip6, ip6)) {
      throw new ControlError(ControlErrorCode.mismatch, `port ${name} has ${podAddresses(port) || 'no address'}, not ${podAddresses({ ip, ip6 }) || 'no address'}`);
    }
    if (!existsSync(port.netns)) throw new ControlError(ControlErrorCode.mismatch, `port ${name}: network namespace ${port.netns} is gone`);
    const link = await linkIn(port.netns, ifName);
    if (link === null || link.kind !== 'tun' || link.mac !== macToString(port.mac)) {
      throw new ControlError(ControlErrorCode.mismatch, `port ${name}: ${ifName} in ${port.netns} is ${link === null ? 'missing' : `a ${link.kind || 'non-tun'} link with MAC ${link.mac}`}, expected our TAP ${macToString(port.mac)}`);
    }
  }

  toInfo(port: PodPort): PortInfo {
    const v4 = port.ip !== 0;
    const info: PortInfo = {
      containerId: port.containerId, ifName: port.ifName, hostName: port.hostName, mac: macToString(port.mac), netns: port.netns,
      ip: v4 ? ipv4ToString(port.ip) : '', prefixLength: v4 ? port.prefixLength : 0, gateway: v4 ? ipv4ToString(port.gateway) : '', mtu: port.mtu,
      podName: port.podName, podNamespace: port.podNamespace, network: port.network,
    };
    if (port.ip6 !== null && port.gateway6 !== null) {
      info.ip6 = ipv6ToString(port.ip6);
      info.prefixLength6 = port.prefixLength6;
      info.gateway6 = ipv6ToString(port.gateway6);
    }
    return info;
  }

  /** The control-socket handler for these ports; `status` is the agent's (node, podCIDR, ...). */
  controlHandler(status: () => StatusInfo | Promise<StatusInfo>): ControlHandler {
    return {
      status,
      addPort: async (r) => this.toInfo(await this.addPort(addParams(r))),
      delPort: async (r) => { await this.delPort(r.containerId, r.ifName); },
      checkPort: (r) => this.checkPort(r.containerId, r.ifName, r.ip === undefined ? 0 : ipv4(r.ip), r.ip6 === undefined ? null : ip6Of(r.ip6)),
      listPorts: () => this.list().map((p) => this.toInfo(p)),
    };
  }

  #save(): void {
    mkdirSync(this.#opts.stateDir, { recursive: true, mode: 0o700 });
    const file = join(this.#opts.stateDir, STATE_FILE);
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version: 1, ports: this.list().map((p) => this.toInfo(p)) }, null, 1)}\n`, { mode: 0o600 });
    renameSync(tmp, file);
  }

  #readState(): PortInfo[] {
    let text: string;
    try {
      text = readFileSync(join(this.#opts.stateDir, STATE_FILE), 'utf8');
    } catch {
      return [];
    }
    try {
      const state = JSON.parse(text) as { ports?: PortInfo[] };
      return Array.isArray(state.ports) ? state.ports : [];
    } catch (err) {
      this.#log(`${STATE_FILE}: unreadable, starting without ports: ${(err as Error).message}`);
      return [];
    }
  }

  /** Brings back the ports of a previous run (see top of file). Call once, before serving. */
  restore(): Promise<RestoreReport> {
    return this.#exclusive(async () => {
      const report: RestoreReport = { reattached: [], recreated: [], dropped: [] };
      for (const info of this.#readState()) {
        const name = key(info.containerId, info.ifName);
        try {
          // A state file of before IPv6 has no ip6 fields: its ports are IPv4-only.
          const p = addParams(info);
          if (this.#ports.has(name)) continue;
          this.#validate(p);
          const inPlace = this.#attachInPlace(p, info);
          if (inPlace !== null) {
            this.#adopt(inPlace);
            report.reattached.push(name);
            continue;
          }
          const link = await linkIn(p.netns, p.ifName);
          if (link !== null && (link.kind !== 'tun' || link.mac !== info.mac)) {
            throw new Error(`${p.ifName} in ${p.netns} is not our TAP (kind '${link.kind}', MAC ${link.mac})`);
          }
          this.#adopt(await this.#create(p, link === null ? null : await this.#bringBack(p, info.hostName)));
          (link === null ? report.recreated : report.reattached).push(name);
        } catch (err) {
          this.#log(`restore ${name}: dropped: ${(err as Error).message}`);
          report.dropped.push(name);
        }
      }
      this.#save();
      return report;
    });
  }

  /**
   * Takes the pod's persistent TAP back where it is, inside the pod (the fast path of a
   * restart: no command runs, and the pod never loses its eth0, its address or its
   * routes). Null when the pod has no such link (it is recreated) or it is not ours
   * (the slow path below says why); throws when the namespace is gone.
   */
  #attachInPlace(p: AddPortParams, info: PortInfo): PodPort | null {
    let device: TunDevice;
    try {
      device = TunDevice.open({ name: p.ifName, mode: 'tap', vnetHdr: true, offloads: OFFLOADS, netns: p.netns });
    } catch (err) {
      const code = err instanceof DeviceError ? err.code : '';
      if (code === 'ENOENT') throw new ControlError(ControlErrorCode.netnsNotFound, `network namespace ${p.netns} does not exist`);
      return null; // ENODEV: no such link; EINVAL: a link of another kind; both for the slow path
    }
    if (device.mac !== info.mac) {
      device.close(); // its persist flag is untouched: the device stays as it was
      return null;
    }
    return {
      containerId: p.containerId, ifName: p.ifName, hostName: info.hostName, netns: p.netns, mac: macForPod(p.ip, p.ip6), ip: p.ip,
      prefixLength: p.prefixLength, gateway: p.gateway, ip6: p.ip6 ?? null, prefixLength6: p.ip6 ? p.prefixLength6 ?? 0 : 0, gateway6: p.ip6 ? p.gateway6 ?? null : null,
      mtu: this.#opts.mtu, podName: p.podName ?? '', podNamespace: p.podNamespace ?? '', network: p.network ?? '', device, failed: false,
    };
  }

  /** Moves the persistent TAP from the pod into our namespace and attaches to it. */
  async #bringBack(p: AddPortParams, hostName: string): Promise<TunDevice> {
    // `ip link set ... netns PID` takes our namespace by process id; rename in the same request.
    await nsIp(p.netns, ['link', 'set', 'dev', p.ifName, 'netns', String(process.pid), 'name', hostName]);
    try {
      return TunDevice.open({ name: hostName, mode: 'tap', vnetHdr: true, offloads: OFFLOADS, persist: true });
    } catch (err) {
      // Do not leave a stray persistent TAP in the node's namespace.
      await tryIp(['link', 'del', 'dev', hostName]);
      throw new ControlError(ControlErrorCode.deviceError, `re-attaching TAP ${hostName}: ${(err as Error).message}`);
    }
  }

  /**
   * Closes every port's fd. Default: TAPs are made non-persistent and vanish (contract:
   * "pod TAPs vanish with their fd"); the state file stays, so the next agent recreates
   * them. keepPorts: TAPs stay in the pods (down to no traffic) for the next agent to
   * re-attach. onPortRemoved is not called: the datapath is being stopped anyway.
   */
  async close(opts: { keepPorts?: boolean } = {}): Promise<void> {
    await this.#exclusive(async () => {
      for (const port of this.#ports.values()) this.#release(port, opts.keepPorts === true && this.#persist);
      this.#ports.clear();
    });
  }
}

