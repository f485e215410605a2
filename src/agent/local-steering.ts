// The node's own processes to node ports, load-balancer IPs and external IPs: policy
// routing that sends them into the host TUN, so the agent answers them as it answers the
// same addresses from outside (kube-proxy answers them from the node, in OUTPUT).
//
// A packet a process sends to one of the node's own addresses is delivered by the `local`
// routing table, which the kernel consults first (rule 0: `from all lookup local`), and it
// never leaves through a device that tc could see on the way in. So the agent puts its
// rules in front of that one, each naming exactly what it steers, into a table of its
// own whose routes go to the TUN:
//
//   ip rule add pref 0 iif lo to NODE ipproto tcp dport 30000-32767 lookup 8277   (health-check ports cut out)
//   ip rule add pref 0 iif lo to NODE ipproto udp dport 30000-32767 lookup 8277
//   ip rule add pref 0 iif lo to 127.0.0.1 ...                                    (localhost node ports)
//   ip rule add pref 0 iif lo to VIP ipproto tcp dport 80 lookup 8277             (each LB / external IP service port)
//   ip rule add pref 1 lookup local; ip rule del pref 0 lookup local              (once: local moves behind them)
//   ip route replace default dev TUN src NODE table 8277
//   ip route replace 127.0.0.0/8 dev TUN src 127.0.0.1 table 8277
//
// `iif lo` is how a rule names locally generated packets (an output route lookup runs with
// the loopback device as its input interface), so traffic arriving from anywhere else never
// matches. Rules are only looked up when a route is (a connected socket caches its route),
// not per packet. The kernel rejects a second rule equal to one it has (EEXIST), and keeps
// rules of equal preference in the order they were added, so the local rule cannot simply be
// re-added behind ours at pref 0: it moves to pref 1, and goes back to 0 with --remove-ports.
//
// The replies come back through the TUN with a local source (and for localhost, a loopback
// source and destination): the kernel's martian checks need accept_local and route_localnet,
// set on the TUN only, in the node's namespace. route_localnet is set only while localhost
// node ports are configured; the datapath never hands the TUN a packet from a pod to
// 127.0.0.0/8 that is not a reply of a flow it translated (DatapathDrop.LOOPBACK_DESTINATION),
// so the TUN's route_localnet opens nothing to pods (CVE-2020-8558 was route_localnet on
// every interface with nothing in front of it).
//
// IPv6 (a node with IPv6 node-port addresses): a second instance does the same with
// `ip -6`: its rules (/128 destinations) in the same table number of the IPv6 rule set,
// the IPv6 local rule moved behind them, a default route to the TUN from the node's IPv6
// address. IPv6 needs no martian sysctl for the replies, and has no localhost node ports
// (kube-proxy's localhost node ports are IPv4 only).
import { tryIp } from '../device/ip-command.ts';
import type { PortRange } from '../model/cluster-defaults.ts';
import { ipv4ToString, ipv6ToString, parseIpv4, parseIpv6 } from '../wire/index.ts';
import { SteeringError, setSysctls } from './steering.ts';

/** Tapir's routing table ("TAPR" on a phone keypad); unused by the usual neighbours (Tailscale 52, Cilium 2004/2005, wg-quick 51820). */
export const LOCAL_STEERING_TABLE = 8277;
/** Preference of Tapir's rules: before the local rule. */
export const LOCAL_STEERING_PREF = 0;
/** Where the local rule goes while Tapir's rules are in front of it. */
export const LOCAL_RULE_PREF = 1;

const PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp' };

/** The rules of one family. Addresses: IPv4 as uint32 or text, IPv6 as text. */
export interface LocalSteeringRules {
  /** Node-port addresses, 127.0.0.1 included when localhost node ports are on. */
  nodePortAddresses: (number | string)[];
  nodePortRange: PortRange;
  /** healthCheckNodePorts: served by the agent's own listener in the node's stack, so not steered. */
  healthCheckPorts: number[];
  /** Every load-balancer and external IP service port. */
  frontends: { ip: number | string; protocol: number; port: number }[];
}

/** One rule's selector: destination (text), IP protocol, destination port range. */
export interface RuleSelector {
  dst: string;
  protocol: number;
  min: number;
  max: number;
}

/** [min, max] less the ports in `holes`, as ranges in ascending order. */
export function rangesWithout(min: number, max: number, holes: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  let from = min;
  for (const h of [...new Set(holes)].filter((p) => p >= min && p <= max).sort((a, b) => a - b)) {
    if (h > from) out.push([from, h - 1]);
    from = h + 1;
  }
  if (from <= max) out.push([from, max]);
  return out;
}

/** The complete rule set, deduplicated and in a stable order (tested as a golden). */
export function localSteeringSelectors(r: LocalSteeringRules): RuleSelector[] {
  const byKey = new Map<string, RuleSelector>();
  const add = (s: RuleSelector): void => { byKey.set(selectorKey(s), s); };
  for (const a of r.nodePortAddresses) {
    const dst = addressText(a);
    for (const [min, max] of rangesWithout(r.nodePortRange.min, r.nodePortRange.max, r.healthCheckPorts)) add({ dst, protocol: 6, min, max });
    add({ dst, protocol: 17, min: r.nodePortRange.min, max: r.nodePortRange.max });
  }
  for (const f of r.frontends) {
    if (PROTOCOL_NAMES[f.protocol] !== undefined) add({ dst: addressText(f.ip), protocol: f.protocol, min: f.port, max: f.port });
  }
  return [...byKey.values()].sort((a, b) => compareAddresses(a.dst, b.dst) || a.protocol - b.protocol || a.min - b.min);
}

/** What a selector looks like in `ip rule` (the part between `pref N` and `lookup T`). */
export function selectorArgs(s: RuleSelector): string {
  return `to ${s.dst}/${hostBits(s.dst)} iif lo ipproto ${PROTOCOL_NAMES[s.protocol]} dport ${s.min === s.max ? s.min : `${s.min}-${s.max}`}`;
}

function selectorKey(s: RuleSelector): string {
  return `${s.dst} ${PROTOCOL_NAMES[s.protocol] ?? s.protocol} ${s.min}-${s.max}`;
}

/** An address as `ip` prints it: dotted IPv4, canonical IPv6. */
function addressText(a: number | string): string {
  if (typeof a === 'number') return ipv4ToString(a);
  // iproute2 prints IPv6 in RFC 5952 text, as wire's ipv6ToString writes it.
  const b = a.includes(':') ? parseIpv6(a) : null;
  return b === null ? a : ipv6ToString(b);
}

function hostBits(text: string): number {
  return text.includes(':') ? 128 : 32;
}

/** Address order: IPv4 numerically, then IPv6 by bytes. */
function compareAddresses(a: string, b: string): number {
  const a4 = parseIpv4(a);
  const b4 = parseIpv4(b);
  if (a4 !== undefined && b4 !== undefined) return a4 - b4;
  if (a4 !== undefined || b4 !== undefined) return a4 !== undefined ? -1 : 1;
  const x = parseIpv6(a)!;
  const y = parseIpv6(b)!;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/** A rule as `ip -j rule show` prints it. */
interface ShownRule {
  priority?: number;
  src?: string;
  dst?: string;
  dstlen?: number;
  iif?: string;
  ipproto?: string;
  dport?: number;
  dport_start?: number;
  dport_end?: number;
  table?: string;
  [other: string]: unknown;
}

/** The shown rule's key when it is one Tapir would write (a host address, iif lo, a port or range), else null. */
function shownKey(r: ShownRule): string | null {
  if (r.dst === undefined || (r.dstlen !== undefined && r.dstlen !== hostBits(r.dst)) || r.iif !== 'lo' || r.ipproto === undefined) return null;
  const min = r.dport ?? r.dport_start;
  const max = r.dport ?? r.dport_end;
  if (min === undefined || max === undefined) return null;
  return `${r.dst} ${r.ipproto} ${min}-${max}`;
}

/** The `ip rule del` arguments that name a shown rule of Tapir's table exactly. */
function deleteArgs(r: ShownRule): string {
  const parts = [`rule del pref ${r.priority ?? LOCAL_STEERING_PREF}`];
  if (r.src !== undefined && r.src !== 'all') parts.push(`from ${r.src}${r.srclen === undefined ? '' : `/${String(r.srclen)}`}`);
  if (r.dst !== undefined) parts.push(`to ${r.dst}${r.dstlen === undefined ? '' : `/${r.dstlen}`}`);
  if (r.iif !== undefined) parts.push(`iif ${r.iif}`);
  if (r.ipproto !== undefined) parts.push(`ipproto ${r.ipproto}`);
  if (r.dport !== undefined) parts.push(`dport ${r.dport}`);
  else if (r.dport_start !== undefined) parts.push(`dport ${r.dport_start}-${r.dport_end}`);
  parts.push(`lookup ${LOCAL_STEERING_TABLE}`);
  return parts.join(' ');
}

/** A plain `from all lookup local` rule (no selector). */
function isLocalRule(r: ShownRule): boolean {
  if (r.table !== 'local') return false;
  const known = new Set(['priority', 'src', 'table']);
  return (r.src === undefined || r.src === 'all') && Object.keys(r).every((k) => known.has(k));
}

export class LocalSteering {
  readonly #tun: string;
  readonly #nodeIP: string;
  readonly #localhost: boolean;
  /** `ip`'s family option: each instance keeps to its family's rules and routes. */
  readonly #family: '-4' | '-6';

  /**
   * `nodeIP`: the node's address of the family (IPv4 uint32, or IPv6 text), the replies'
   * source. `localhost` (IPv4): some node-port address is a loopback one (route_localnet
   * on the TUN, the 127.0.0.0/8 route).
   */
  constructor(tun: string, nodeIP: number | string, localhost: boolean) {
    this.#tun = tun;
    this.#nodeIP = addressText(nodeIP);
    this.#family = this.#nodeIP.includes(':') ? '-6' : '-4';
    this.#localhost = localhost && this.#family === '-4';
  }

  /**
   * Sysctls, the table's routes and the local rule's place. Idempotent: a restarted agent
   * finds its rules in place and keeps them (a connection of the node's own to a node port
   * keeps its route), and the first apply() changes only what differs.
   */
  async init(): Promise<void> {
    const v4 = this.#family === '-4';
    // Off when localhost node ports are not (any more) configured: nothing else needs it.
    if (v4) await setSysctls([`net.ipv4.conf.${this.#tun}.route_localnet=${this.#localhost ? 1 : 0}`]);
    const lines = [`route replace default dev ${this.#tun} src ${this.#nodeIP} table ${LOCAL_STEERING_TABLE}`];
    if (this.#localhost) lines.push(`route replace 127.0.0.0/8 dev ${this.#tun} src 127.0.0.1 table ${LOCAL_STEERING_TABLE}`);
    else if (v4) await tryIp(['route', 'del', '127.0.0.0/8', 'table', String(LOCAL_STEERING_TABLE)]); // left by an earlier config, or absent
    const rules = await this.#shownRules();
    const local = rules.filter(isLocalRule);
    if (local.some((r) => (r.priority ?? 0) <= LOCAL_STEERING_PREF)) {
      if (!local.some((r) => r.priority === LOCAL_RULE_PREF)) lines.push(`rule add pref ${LOCAL_RULE_PREF} lookup local`);
      lines.push(`rule del pref ${LOCAL_STEERING_PREF} lookup local`);
    }
    await this.#ipBatch(lines, false);
    const after = (await this.#shownRules()).filter(isLocalRule);
    if (after.some((r) => (r.priority ?? 0) <= LOCAL_STEERING_PREF) || after.length === 0) {
      throw new SteeringError(`ip rule: the local rule is not behind Tapir's rules (pref ${LOCAL_STEERING_PREF}) as it should be: ${JSON.stringify(after)}`);
    }
  }

  /** Makes Tapir's rules exactly `rules`: stale ones deleted, missing ones added, the rest untouched. */
  async apply(rules: LocalSteeringRules): Promise<void> {
    const want = new Map(localSteeringSelectors(rules).map((s) => [selectorKey(s), s]));
    const lines: string[] = [];
    for (const r of await this.#shownRules()) {
      if (r.table !== String(LOCAL_STEERING_TABLE)) continue;
      const key = shownKey(r);
      if (key !== null && r.priority === LOCAL_STEERING_PREF && want.delete(key)) continue;
      lines.push(deleteArgs(r));
    }
    for (const s of want.values()) lines.push(`rule add pref ${LOCAL_STEERING_PREF} ${selectorArgs(s)} lookup ${LOCAL_STEERING_TABLE}`);
    if (lines.length > 0) await this.#ipBatch(lines, false);
  }

  /** `--remove-ports`: every rule and route of Tapir's table goes, the local rule back to pref 0, route_localnet off. */
  async remove(): Promise<void> {
    const rules = await this.#shownRules();
    const lines = rules.filter((r) => r.table === String(LOCAL_STEERING_TABLE)).map(deleteArgs);
    lines.push(`route flush table ${LOCAL_STEERING_TABLE}`);
    const local = rules.filter(isLocalRule);
    if (!local.some((r) => r.priority === 0) && local.some((r) => r.priority === LOCAL_RULE_PREF)) {
      lines.push('rule add pref 0 lookup local', `rule del pref ${LOCAL_RULE_PREF} lookup local`);
    }
    await this.#ipBatch(lines, true);
    if (this.#family === '-4') await setSysctls([`net.ipv4.conf.${this.#tun}.route_localnet=0`]).catch(() => { /* the TUN may be gone */ });
  }

  async #shownRules(): Promise<ShownRule[]> {
    const r = await tryIp([this.#family, '-j', 'rule', 'show']);
    if (r.code !== 0) throw new SteeringError(`ip ${this.#family} -j rule show: ${r.stderr.trim()}`);
    try {
      return JSON.parse(r.stdout) as ShownRule[];
    } catch (err) {
      throw new SteeringError(`ip ${this.#family} -j rule show: not JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  async #ipBatch(lines: string[], force: boolean): Promise<void> {
    const r = await tryIp([this.#family, ...(force ? ['-force'] : []), '-batch', '-'], { input: `${lines.join('\n')}\n` });
    if (r.code !== 0 && !force) throw new SteeringError(`ip ${this.#family} -batch (${lines.join('; ')}): ${r.stderr.trim()}`);
  }
}
