// Address management for one CNI invocation: the built-in tapir-ipam (ipam.ts) or any
// other IPAM plugin from CNI_PATH (delegate.ts), behind one interface.
import type { StatusInfo } from '../agent/protocol.ts';
import { parseCidr } from '../wire/address.ts';
import { ipv4ToString, parseIpv4 } from '../wire/address.ts';
import { TAPIR_IPAM, type NetConf, type TapirIpamConfig } from './config.ts';
import { commonVersion, execPlugin, findPlugin, pluginVersions } from './delegate.ts';
import type { CniEnv } from './env.ts';
import { CniCode, CniError } from './errors.ts';
import { IpamStore, makeRange, type IpRange } from './ipam.ts';
import { formatResult, parseResult, type CniDns, type CniRoute } from './result.ts';

export interface IpamLease {
  ip: string;
  prefixLength: number;
  gateway: string;
  /** Routes for the result; the default route is always among them. */
  routes: CniRoute[];
  dns: CniDns;
  /**
   * False when the attachment already held this address before the call (a repeated
   * ADD): a failed ADD must then leave it alone, because a running pod may own it.
   * Undefined when the IPAM cannot tell (a delegated plugin).
   */
  fresh?: boolean;
}

export interface Ipam {
  add(): Promise<IpamLease>;
  del(): Promise<void>;
  check(ip: string): Promise<void>;
  /**
   * Releases allocations of attachments not in `valid`. `stalePorts` are the attachments
   * whose agent ports GC just deleted: for a delegate too old for GC they are released
   * one by one with DEL. Returns a line for the log.
   */
  gc(valid: Set<string>, stalePorts: Attachment[]): Promise<string>;
  status(): Promise<void>;
}

export interface Attachment { containerId: string; ifName: string }

export interface IpamContext {
  conf: NetConf;
  env: CniEnv;
  /** The agent's status, asked once and only when needed (subnet not in the config). */
  agentStatus(): Promise<StatusInfo>;
}

export const DEFAULT_ROUTE = '0.0.0.0/0';

export function makeIpam(ctx: IpamContext): Ipam {
  return ctx.conf.ipam.type === TAPIR_IPAM ? new TapirIpam(ctx, ctx.conf.ipam as TapirIpamConfig) : new DelegatedIpam(ctx);
}

class TapirIpam implements Ipam {
  readonly #ctx: IpamContext;
  readonly #cfg: TapirIpamConfig;
  readonly #store: IpamStore;

  constructor(ctx: IpamContext, cfg: TapirIpamConfig) {
    this.#ctx = ctx;
    this.#cfg = cfg;
    this.#store = new IpamStore(cfg.dataDir, ctx.conf.name);
  }

  async #range(): Promise<IpRange> {
    const cfg = this.#cfg;
    if (cfg.subnet !== null) return makeRange(cfg.subnet, cfg.gateway, cfg.rangeStart, cfg.rangeEnd);
    const status = await this.#ctx.agentStatus();
    const subnet = parseCidr(status.podCIDR);
    if (subnet === undefined) throw new CniError(CniCode.invalidConfig, 'agent reported no usable podCIDR', `status.podCIDR = ${JSON.stringify(status.podCIDR)}; set ipam.subnet in the network configuration`);
    const agentGateway = parseIpv4(status.gateway);
    return makeRange(subnet, cfg.gateway ?? agentGateway ?? null, cfg.rangeStart, cfg.rangeEnd);
  }

  async add(): Promise<IpamLease> {
    const range = await this.#range();
    const { containerId, ifName } = this.#ctx.env;
    const fresh = this.#store.find(containerId, ifName) === null;
    const ip = this.#store.allocate(range, containerId, ifName);
    const gateway = ipv4ToString(range.gateway);
    return {
      fresh,
      ip: ipv4ToString(ip),
      prefixLength: range.subnet.prefixLength,
      gateway,
      routes: [{ dst: DEFAULT_ROUTE, gw: gateway }, ...this.#cfg.routes.filter((r) => r.dst !== DEFAULT_ROUTE)],
      dns: {},
    };
  }

  async del(): Promise<void> {
    this.#store.release(this.#ctx.env.containerId, this.#ctx.env.ifName);
  }

  async check(ip: string): Promise<void> {
    const { containerId, ifName } = this.#ctx.env;
    const address = parseIpv4(ip);
    const owner = address === undefined ? null : this.#store.owner(address);
    if (owner === null || owner.containerId !== containerId || owner.ifName !== ifName) {
      throw new CniError(CniCode.checkFailed, `tapir-ipam has no allocation of ${ip} for this container`,
        `${this.#store.dir}/${ip}: ${owner === null ? 'missing' : `held by ${owner.containerId}/${owner.ifName}`}; expected ${containerId}/${ifName}`);
    }
  }

  async gc(valid: Set<string>): Promise<string> {
    const gone = this.#store.releaseAllExcept(valid);
    return gone.length === 0 ? 'tapir-ipam: nothing stale' : `tapir-ipam released ${gone.map((a) => `${ipv4ToString(a.ip)} (${a.containerId}/${a.ifName})`).join(', ')}`;
  }

  async status(): Promise<void> {
    const range = await this.#range();
    if (this.#store.available(range) === 0) {
      throw new CniError(CniCode.notAvailable, 'plugin not available: no free IP addresses',
        `tapir-ipam: every address of ${ipv4ToString(range.start)}-${ipv4ToString(range.end)} is allocated in ${this.#store.dir}`);
    }
  }
}

class DelegatedIpam implements Ipam {
  readonly #ctx: IpamContext;
  readonly #type: string;
  #path = '';
  #versions: string[] | null = null;

  constructor(ctx: IpamContext) {
    this.#ctx = ctx;
    this.#type = ctx.conf.ipam.type;
  }

  /** The configuration to send: ours, with cniVersion (and prevResult) lowered if the plugin needs it. */
  async #config(min: string): Promise<Record<string, unknown> | null> {
    if (this.#path === '') this.#path = findPlugin(this.#type, this.#ctx.env.path);
    const ours = this.#ctx.conf.cniVersion;
    this.#versions ??= await pluginVersions(this.#path, ours);
    const version = commonVersion(ours, this.#versions, min);
    if (version === null) return null;
    const config: Record<string, unknown> = { ...this.#ctx.conf.raw, cniVersion: version };
    if (version !== ours && this.#ctx.conf.prevResult !== undefined) {
      config.prevResult = formatResult(parseResult(this.#ctx.conf.prevResult, 'prevResult'), version);
    }
    return config;
  }

  async #run(command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS', min: string, env: NodeJS.ProcessEnv = process.env): Promise<Record<string, unknown> | null | 'unsupported'> {
    const config = await this.#config(min);
    if (config === null) return 'unsupported';
    return execPlugin(this.#path, command, config, env);
  }

  async add(): Promise<IpamLease> {
    const answer = await this.#run('ADD', '0.3.0');
    if (answer === 'unsupported') throw this.#noVersion('ADD');
    if (answer === null) throw new CniError(CniCode.decode, `ipam plugin ${this.#type} printed no result for ADD`);
    const result = parseResult(answer, `result of ipam plugin ${this.#type}`);
    const v4 = result.ips.find((ip) => !ip.address.includes(':'));
    if (v4 === undefined) throw new CniError(CniCode.invalidConfig, `ipam plugin ${this.#type} returned no IPv4 address`, `tapir pods are IPv4 only; got ${JSON.stringify(answer.ips)}`);
    const cidr = parseCidr(v4.address);
    if (cidr === undefined) throw new CniError(CniCode.decode, `ipam plugin ${this.#type} returned a malformed address`, v4.address);
    const ip = v4.address.slice(0, v4.address.indexOf('/'));
    let gateway = v4.gateway;
    if (gateway === undefined) {
      const status = await this.#ctx.agentStatus().catch(() => null);
      const agentGateway = status === null ? undefined : parseIpv4(status.gateway);
      gateway = agentGateway !== undefined && cidr.contains(agentGateway) ? status!.gateway : ipv4ToString(cidr.host(1));
    }
    const routes = result.routes.filter((r) => !r.dst.includes(':'));
    if (!routes.some((r) => r.dst === DEFAULT_ROUTE)) routes.unshift({ dst: DEFAULT_ROUTE, gw: gateway });
    return { ip, prefixLength: cidr.prefixLength, gateway, routes, dns: result.dns };
  }

  async del(): Promise<void> {
    const answer = await this.#run('DEL', '0.3.0');
    if (answer === 'unsupported') throw this.#noVersion('DEL');
  }

  async check(): Promise<void> {
    const answer = await this.#run('CHECK', '0.4.0');
    if (answer === 'unsupported') throw this.#noVersion('CHECK');
  }

  async gc(_valid: Set<string>, stalePorts: Attachment[]): Promise<string> {
    const answer = await this.#run('GC', '1.1.0');
    if (answer !== 'unsupported') return `ipam plugin ${this.#type} GC done`;
    // Pre-1.1 delegate: release what we know to be stale, as the runtime's DEL would have.
    const released: string[] = [];
    for (const a of stalePorts) {
      const env = { ...process.env, CNI_CONTAINERID: a.containerId, CNI_IFNAME: a.ifName, CNI_NETNS: '' };
      await this.#run('DEL', '0.3.0', env);
      released.push(`${a.containerId}/${a.ifName}`);
    }
    return `ipam plugin ${this.#type} has no GC (CNI 1.1.0); released with DEL: ${released.join(', ') || 'none'}; allocations without an agent port were left alone`;
  }

  async status(): Promise<void> {
    // A delegate older than 1.1.0 has no STATUS; it is usable as long as it can be found.
    await this.#run('STATUS', '1.1.0');
  }

  #noVersion(command: string): CniError {
    return new CniError(CniCode.incompatibleVersion, `ipam plugin ${this.#type} supports no CNI version usable for ${command}`,
      `${this.#path} supports ${this.#versions?.join(', ')}; network is ${this.#ctx.conf.cniVersion}`);
  }
}
