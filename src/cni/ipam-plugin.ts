// Address management for one CNI invocation: the built-in tapir-ipam (ipam.ts) or any
// other IPAM plugin from CNI_PATH (delegate.ts), behind one interface.
import type { StatusInfo } from '../agent/protocol.ts';
import { parseCidr, parseCidr6 } from '../wire/address.ts';
import { TAPIR_IPAM, type NetConf, type RangeConfig, type TapirIpamConfig } from './config.ts';
import { commonVersion, execPlugin, findPlugin, pluginVersions } from './delegate.ts';
import type { CniEnv } from './env.ts';
import { CniCode, CniError } from './errors.ts';
import { addressText, addressValue, IpamStore, makeRange, type Family, type IpRange } from './ipam.ts';
import { formatResult, parseResult, type CniDns, type CniRoute } from './result.ts';

/** One address of the lease: text of its family, as the result and the agent take it. */
export interface LeaseAddress { ip: string; prefixLength: number; gateway: string }

export interface IpamLease {
  /** The pod's IPv4 and IPv6 address; at least one is set. */
  v4: LeaseAddress | null;
  v6: LeaseAddress | null;
  /** Routes for the result; the default route of each family the pod has is always among them. */
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
  /** Throws unless the IPAM holds each of these addresses for the attachment. */
  check(ips: string[]): Promise<void>;
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
export const DEFAULT_ROUTE6 = '::/0';

const isDefaultRoute = (dst: string): boolean => dst === DEFAULT_ROUTE || dst === DEFAULT_ROUTE6;
const routeFamily = (dst: string): Family => (dst.includes(':') ? 6 : 4);

/** Each family's default route via its gateway, then the other routes of families the pod has. */
export function leaseRoutes(v4: LeaseAddress | null, v6: LeaseAddress | null, configured: readonly CniRoute[]): CniRoute[] {
  const routes: CniRoute[] = [];
  if (v4 !== null) routes.push({ dst: DEFAULT_ROUTE, gw: v4.gateway });
  if (v6 !== null) routes.push({ dst: DEFAULT_ROUTE6, gw: v6.gateway });
  for (const r of configured) {
    if (isDefaultRoute(r.dst)) continue;
    if ((routeFamily(r.dst) === 4 ? v4 : v6) !== null) routes.push(r);
  }
  return routes;
}

/** The gateway a route of `dst`'s family goes through when it names none. */
export function routeGateway(lease: IpamLease, dst: string): string | undefined {
  return (routeFamily(dst) === 4 ? lease.v4 : lease.v6)?.gateway;
}

/** The lease's addresses as text, for messages. */
export function leaseAddresses(lease: IpamLease): string {
  return [lease.v4?.ip, lease.v6?.ip].filter((x) => x !== undefined).join(' and ');
}

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

  /**
   * The ranges to allocate from: the configured ones, or the agent's podCIDR (with the
   * single form's IPv4 gateway, rangeStart, rangeEnd) and its podCIDRv6 when it has one.
   */
  async #ranges(): Promise<IpRange[]> {
    const cfg = this.#cfg;
    if (cfg.ranges.some((r) => r.subnet !== null)) return cfg.ranges.map((r) => makeRange(r.subnet!, r.gateway, r.rangeStart, r.rangeEnd, r.set, r.path));
    const status = await this.#ctx.agentStatus();
    const subnet = parseCidr(status.podCIDR);
    if (subnet === undefined) throw new CniError(CniCode.invalidConfig, 'agent reported no usable podCIDR', `status.podCIDR = ${JSON.stringify(status.podCIDR)}; set ipam.subnet or ipam.ranges in the network configuration`);
    const single: RangeConfig | undefined = cfg.ranges[0];
    const agentGateway = addressValue(status.gateway)?.family === 4 ? status.gateway : null;
    const ranges = [makeRange(subnet, single?.gateway ?? agentGateway, single?.rangeStart ?? null, single?.rangeEnd ?? null, 0, 'ipam')];
    if (status.podCIDRv6 !== undefined) {
      const subnet6 = parseCidr6(status.podCIDRv6);
      if (subnet6 === undefined) throw new CniError(CniCode.invalidConfig, 'agent reported an unusable podCIDRv6', `status.podCIDRv6 = ${JSON.stringify(status.podCIDRv6)}; set ipam.ranges in the network configuration`);
      ranges.push(makeRange(subnet6, status.gateway6 ?? null, null, null, 1, 'ipam (the agent\'s podCIDRv6)'));
    }
    return ranges;
  }

  async add(): Promise<IpamLease> {
    const ranges = await this.#ranges();
    const { containerId, ifName } = this.#ctx.env;
    // Fresh only when the attachment held no address at all: a repeated ADD keeps both.
    const fresh = ranges.every((r) => this.#store.find(containerId, ifName, r) === null);
    const lease: IpamLease = { fresh, v4: null, v6: null, routes: [], dns: {} };
    try {
      for (const range of ranges) {
        const ip = this.#store.allocate(range, containerId, ifName);
        lease[range.family === 4 ? 'v4' : 'v6'] = { ip, prefixLength: range.subnet.prefixLength, gateway: addressText(range.family, range.gateway) };
      }
    } catch (err) {
      // The other family's address must not stay behind a failed ADD.
      if (fresh) this.#store.release(containerId, ifName);
      throw err;
    }
    lease.routes = leaseRoutes(lease.v4, lease.v6, this.#cfg.routes);
    return lease;
  }

  async del(): Promise<void> {
    this.#store.release(this.#ctx.env.containerId, this.#ctx.env.ifName);
  }

  async check(ips: string[]): Promise<void> {
    const { containerId, ifName } = this.#ctx.env;
    for (const ip of ips) {
      const owner = this.#store.owner(ip);
      if (owner === null || owner.containerId !== containerId || owner.ifName !== ifName) {
        throw new CniError(CniCode.checkFailed, `tapir-ipam has no allocation of ${ip} for this container`,
          `${this.#store.dir}/${ip}: ${owner === null ? 'missing' : `held by ${owner.containerId}/${owner.ifName}`}; expected ${containerId}/${ifName}`);
      }
    }
  }

  async gc(valid: Set<string>): Promise<string> {
    const gone = this.#store.releaseAllExcept(valid);
    return gone.length === 0 ? 'tapir-ipam: nothing stale' : `tapir-ipam released ${gone.map((a) => `${a.ip} (${a.containerId}/${a.ifName})`).join(', ')}`;
  }

  async status(): Promise<void> {
    for (const range of await this.#ranges()) {
      if (this.#store.available(range) === 0n) {
        throw new CniError(CniCode.notAvailable, 'plugin not available: no free IP addresses',
          `tapir-ipam: every address of ${addressText(range.family, range.start)}-${addressText(range.family, range.end)} is allocated in ${this.#store.dir}`);
      }
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
    // One address per family: the first of each (host-local answers one per range set).
    const v4 = result.ips.find((ip) => !ip.address.includes(':'));
    const v6 = result.ips.find((ip) => ip.address.includes(':'));
    if (v4 === undefined && v6 === undefined) throw new CniError(CniCode.invalidConfig, `ipam plugin ${this.#type} returned no address`, `got ${JSON.stringify(answer.ips)}`);
    const lease: IpamLease = { v4: null, v6: null, routes: [], dns: result.dns };
    for (const entry of [v4, v6]) {
      if (entry === undefined) continue;
      const family = entry.address.includes(':') ? 6 : 4;
      const cidr = family === 4 ? parseCidr(entry.address) : parseCidr6(entry.address);
      if (cidr === undefined) throw new CniError(CniCode.decode, `ipam plugin ${this.#type} returned a malformed address`, entry.address);
      const ip = entry.address.slice(0, entry.address.indexOf('/'));
      let gateway = entry.gateway;
      if (gateway === undefined) {
        // The agent's gateway when it is in the subnet, else the subnet's first address (host-local's default).
        const status = await this.#ctx.agentStatus().catch(() => null);
        const agentGateway = status === null ? undefined : family === 4 ? status.gateway : status.gateway6;
        const value = agentGateway === undefined ? undefined : addressValue(agentGateway);
        const range = makeRange(cidr, null, null, null);
        gateway = value !== undefined && value.family === family && makeRangeContains(range, value.value) ? agentGateway! : addressText(family, range.gateway);
      }
      lease[family === 4 ? 'v4' : 'v6'] = { ip, prefixLength: cidr.prefixLength, gateway };
    }
    lease.routes = leaseRoutes(lease.v4, lease.v6, result.routes);
    return lease;
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

/** Whether `value` is a host address of the (default, whole-subnet) range. */
function makeRangeContains(range: IpRange, value: bigint): boolean {
  return value >= range.start && value <= range.end;
}
